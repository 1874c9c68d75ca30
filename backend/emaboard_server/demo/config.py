"""The demo's hyper-parameters (no torch import: the CLI reads the defaults from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DemoConfig:
    """Hyper-parameters of the demo run (defaults: ~20 s on 2 CPU cores).

    The learning rate is deliberately high and a share of the training labels is wrong, so
    the live weights wander and the averaged ones visibly evaluate better. ``threads`` is the
    number of torch CPU threads while training: one is the fastest for this tiny model and
    leaves the other cores to the server and the sender.

    ``posthoc_sigma_rels`` are the power EMAs of the post-hoc EMA (EDM2), snapshotted once per
    epoch; after every epoch the EMAs of 10 σ_rels are rebuilt from the snapshots and
    evaluated (the "what-if decay" sweep). Empty: no post-hoc EMA.
    """

    epochs: int = 20
    seed: int = 0
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 16
    label_noise: float = 0.2
    val_fraction: float = 0.2
    decays: tuple[float, ...] = (0.99, 0.999)
    warmup_power: float = 0.75
    swa_lr: float = 0.05
    stats_every: int = 10
    threads: int = 1
    posthoc_sigma_rels: tuple[float, ...] = (0.05, 0.10)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"Invalid epochs {self.epochs}: expected an integer >= 1")
        if self.lr <= 0 or self.swa_lr <= 0:
            raise ValueError(f"Invalid lr {self.lr} / swa_lr {self.swa_lr}: expected > 0")
        if self.batch_size < 1:
            raise ValueError(f"Invalid batch_size {self.batch_size}: expected an integer >= 1")
        if self.stats_every < 1:
            raise ValueError(f"Invalid stats_every {self.stats_every}: expected >= 1")
        if self.threads < 1:
            raise ValueError(f"Invalid threads {self.threads}: expected an integer >= 1")

    @property
    def swa_start_epoch(self) -> int:
        """First epoch (0-based) of the SWA phase: the last quarter of the epochs, at least one."""
        return self.epochs - max(1, self.epochs // 4)

    @property
    def best_averager(self) -> str:
        """The EMA whose best snapshot is tracked: the slowest one."""
        return f"ema_{max(self.decays)!r}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready config (sent to the server as the run's config)."""
        return {**asdict(self), "decays": list(self.decays),
                "posthoc_sigma_rels": list(self.posthoc_sigma_rels), "model": "DigitsCNN"}

"""The demo's training loop: SGD on the digits with two EMAs, SWA and a post-hoc EMA,
evaluated every epoch, with the what-if decay sweep.

Importable and testable without a server: ``train(DemoConfig(epochs=2))`` runs offline;
pass a ``Monitor`` to stream, and a :class:`Progress` to draw a progress bar.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import SWALR

from ema_core.ema import EMA
from ema_core.posthoc_ema import PostHocEMA
from ema_core.snapshot import snapshot_metadata, snapshot_state
from ema_core.swa import SWA
from ema_core.swap import evaluate_all
from ema_core.whatif import evaluate_posthoc
from emaboard_server.demo.config import DemoConfig
from emaboard_server.demo.data import DigitsSplit, load_split, train_loader
from emaboard_server.demo.model import DigitsCNN

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochResult:
    """One epoch: its last step, mean training loss, ``{model: {"accuracy", "loss"}}`` and the
    what-if decay sweep ``{σ_rel: {"accuracy", "loss"}}`` (empty without a post-hoc EMA)."""

    epoch: int
    step: int
    train_loss: float
    results: dict[str, dict[str, float]]
    whatif: dict[float, dict[str, float]] = field(default_factory=dict)


@dataclass
class BestEMA:
    """The best evaluation of the tracked EMA, and its weights at that step (CPU copies)."""

    averager: str
    accuracy: float = -1.0
    step: int = -1
    tensors: dict[str, Tensor] = field(default_factory=dict, repr=False)
    metadata: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass
class DemoResult:
    """What a run produced: per-epoch results, the best EMA, the wall time."""

    config: DemoConfig
    history: list[EpochResult]
    best_ema: BestEMA
    seconds: float

    def best_accuracy(self) -> dict[str, tuple[float, int]]:
        """Per model, the best validation accuracy and the (1-based) epoch that reached it."""
        best: dict[str, tuple[float, int]] = {}
        for epoch in self.history:
            for name, metrics in epoch.results.items():
                if name not in best or metrics["accuracy"] > best[name][0]:
                    best[name] = (metrics["accuracy"], epoch.epoch + 1)
        return best


class Progress(Protocol):
    """Receives progress as training goes (the terminal progress bar implements it)."""

    def on_start(self, total_steps: int) -> None: ...

    def on_step(self, epoch: int, step: int, loss: float) -> None: ...

    def on_epoch(self, result: EpochResult, best_ema_accuracy: float) -> None: ...


class StreamingMonitor(Protocol):
    """The part of ``ema_core.client.Monitor`` the demo uses."""

    def watch(
        self, *averagers: Any, stats_every: int = 50, batch_size: int | None = None
    ) -> None: ...

    def step(self, step: int, scalars: dict[str, float] | None = None) -> None: ...

    def log_eval(self, step: int, results: dict[str, dict[str, float]]) -> None: ...

    def log_posthoc(self, step: int, results: dict[float, dict[str, float]]) -> None: ...

    def track_best(self, metric: str, mode: str = "max", averager: str = ...) -> None: ...


def evaluate(model: nn.Module, split: DigitsSplit) -> dict[str, float]:
    """Validation accuracy (share in [0, 1]) and mean cross-entropy of ``model``, in eval mode.

    One forward pass over the whole validation set, so the numbers depend only on the
    weights (the end-to-end test reproduces them from a downloaded snapshot).
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(split.val_x)  # (N_val, 10)
    model.train(was_training)
    accuracy = (logits.argmax(dim=1) == split.val_y).double().mean().item()
    return {"accuracy": accuracy, "loss": F.cross_entropy(logits, split.val_y).item()}


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic algorithms and ``threads`` CPU threads for the block, then as before."""
    previous = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def build_model(seed: int) -> DigitsCNN:
    """A freshly initialised :class:`DigitsCNN`, the same for the same seed."""
    torch.manual_seed(seed)
    return DigitsCNN()


def train(
    config: DemoConfig,
    monitor: StreamingMonitor | None = None,
    progress: Progress | None = None,
    posthoc_dir: Path | None = None,
) -> DemoResult:
    """Train the demo CNN, averaging with EMA, SWA and a post-hoc EMA; evaluate all and
    sweep σ_rel after every epoch.

    Args:
        config: Hyper-parameters.
        monitor: Streams steps, weight statistics, evaluations, the what-if sweep, the best
            EMA snapshot and the post-hoc snapshots.
        progress: Told about every step and epoch.
        posthoc_dir: Where the post-hoc snapshots go (kept); default a temporary folder,
            removed at the end.

    Returns:
        The per-epoch results and the best snapshot of ``config.best_averager``.
    """
    started = time.perf_counter()
    with ExitStack() as stack, deterministic(config.threads):
        if posthoc_dir is None:
            posthoc_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        loop = _Loop(config, monitor, progress, posthoc_dir)
        if progress is not None:
            progress.on_start(config.epochs * len(loop.loader))
        history = [loop.run_epoch(epoch) for epoch in range(config.epochs)]
        if loop.posthoc is not None:
            loop.posthoc.close()  # every file written before the folder may go
    return DemoResult(config, history, loop.best, time.perf_counter() - started)


class _Loop:
    """State of one training run (model, optimizer, averagers), one epoch at a time."""

    def __init__(
        self, config: DemoConfig, monitor: StreamingMonitor | None, progress: Progress | None,
        posthoc_dir: Path,
    ) -> None:
        self.config, self.monitor, self.progress = config, monitor, progress
        self.split = load_split(
            config.seed, val_fraction=config.val_fraction, label_noise=config.label_noise
        )
        self.loader = train_loader(self.split, batch_size=config.batch_size, seed=config.seed)
        self.model = build_model(config.seed)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        self.swa_lr = SWALR(self.optimizer, swa_lr=config.swa_lr, anneal_epochs=1)
        self.ema = EMA(self.model, config.decays, use_warmup=True, warmup_power=config.warmup_power)
        swa_start_step = config.swa_start_epoch * len(self.loader)
        self.swa = SWA(self.model, start_step=swa_start_step)
        self.posthoc = (PostHocEMA(self.model, posthoc_dir, snapshot_every=len(self.loader),
                                   sigma_rels=config.posthoc_sigma_rels)
                        if config.posthoc_sigma_rels else None)
        self.step = 0
        self.best = BestEMA(config.best_averager)
        if monitor is not None:
            averagers = [a for a in (self.ema, self.swa, self.posthoc) if a is not None]
            monitor.watch(*averagers, stats_every=config.stats_every,
                          batch_size=config.batch_size)
            monitor.track_best("accuracy", mode="max", averager=config.best_averager)

    def run_epoch(self, epoch: int) -> EpochResult:
        losses = [self._train_step(epoch, x, y) for x, y in self.loader]
        in_swa = epoch >= self.config.swa_start_epoch
        if in_swa:
            self.swa_lr.step()
            self.swa.update_bn(self.loader, self.model)
        averagers: list[Any] = [self.ema, self.swa] if self.swa.n_averaged else [self.ema]
        if self.posthoc is not None:
            averagers.append(self.posthoc)  # the tracked σ_rels, marked on the what-if curve
        results = evaluate_all(self.model, averagers, lambda m: evaluate(m, self.split))
        whatif = ({} if self.posthoc is None else
                  evaluate_posthoc(self.model, self.posthoc, lambda m: evaluate(m, self.split)))
        result = EpochResult(epoch, self.step, sum(losses) / len(losses), results, whatif)
        self._track_best(results)
        if self.monitor is not None:
            self.monitor.log_eval(self.step, results)
            if whatif:
                self.monitor.log_posthoc(self.step, whatif)
        if self.progress is not None:
            self.progress.on_epoch(result, self.best.accuracy)
        return result

    def _train_step(self, epoch: int, x: Tensor, y: Tensor) -> float:
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.step += 1
        self.ema.update(self.model)
        self.swa.update(self.model)
        if self.posthoc is not None:
            self.posthoc.update(self.model)
        value = loss.item()
        if self.monitor is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            self.monitor.step(self.step, {"loss": value, "lr": lr})
        if self.progress is not None:
            self.progress.on_step(epoch, self.step, value)
        return value

    def _track_best(self, results: dict[str, dict[str, float]]) -> None:
        name = self.best.averager
        accuracy = results[name]["accuracy"]
        if accuracy > self.best.accuracy:
            self.best.accuracy, self.best.step = accuracy, self.step
            self.best.tensors = snapshot_state(self.ema, name)
            self.best.metadata = snapshot_metadata(self.ema, name, metrics=results[name])

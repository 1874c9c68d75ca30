"""PostHocEMA: power-function EMAs with periodic snapshots, for post-hoc EMA (EDM2)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ema_core import schedules
from ema_core._posthoc_snapshots import PosthocSnapshotFiles
from ema_core.ema import EMA, _as_list
from ema_core.posthoc import PosthocSolution
from ema_core.posthoc_files import PosthocSnapshot, solve_for_snapshots
from ema_core.posthoc_synthesis import synthesis_metadata, synthesize_posthoc, write_synthesis

__all__ = [
    "PostHocEMA",
    "TIME_UNITS",
]

TIME_UNITS = ("steps", "samples")
"""Units of training time accepted by :class:`PostHocEMA` (EDM2 counts samples: images)."""

_SNAPSHOT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class PostHocEMA(EMA):
    """EDM2 power-function EMAs snapshotted every ``snapshot_every`` steps (post-hoc EMA).

    Keeps one shadow per σ_rel (default 0.05 and 0.10, as EDM2), updated in one pass with
    the exact power schedule β = ((t − Δ)/t)^(γ+1) (Δ: time since the previous update;
    Karras et al. 2024, arXiv:2312.02696, eq. 3 and App. C.2), and every ``snapshot_every``
    steps writes each shadow to ``snapshot_dir`` as a safetensors file named
    ``<averager>-<step:010d>.safetensors``. From those files the EMA of any σ_rel at any
    snapshot step is rebuilt afterwards (:meth:`reconstruct`; App. C.3). The copy to CPU
    happens on the calling thread; files are written by a background thread.

    Training time is counted in steps, or in samples (``time_unit="samples"``: pass each
    step's global batch size to :meth:`update`), as EDM2 counts images; both are exact with
    ``update_every > 1`` and with batch sizes that change.

    Snapshot metadata: everything :func:`~ema_core.snapshot.snapshot_metadata` writes plus
    ``snapshot_kind="posthoc"``, ``time`` (averaging time of the shadow's latest update, in
    ``time_unit``), ``time_unit``, ``gamma``, ``sigma_rel``, ``update_every``,
    ``update_after_step``, ``fingerprint`` (hash of keys and shapes), ``copied_keys`` (JSON
    list) and ``wall_time`` (Unix seconds).

    Distributed (DDP, FSDP2): construct and update it on every rank. Rank 0 alone writes the
    files (a sharded shadow is gathered to it tensor by tensor, every rank joining), so
    ``snapshots``, :meth:`reconstruct` and the Monitor's uploads are rank 0's.

    Args:
        model: The live model; shadows start as a copy of its weights.
        snapshot_dir: Folder for the snapshot files (created if missing).
        snapshot_every: Steps between snapshots (≥ 1); EDM2 snapshots about 1/256 of a run.
        sigma_rels: σ_rels to track, each in (0, 0.2887); names ``ema_sigma_rel_<σ>``.
        gammas: Exponents γ > 0 instead of ``sigma_rels``; names ``ema_gamma_<γ>``.
        time_unit: ``"steps"`` or ``"samples"``.
        update_every: Update the shadows every k-th step (k ≥ 1).
        update_after_step: Steps during which the shadows copy the live weights.
        snapshot_dtype: Dtype of averaged tensors in the files: ``torch.float32`` (default),
            or ``torch.float16``/``torch.bfloat16`` to halve the disk use (their rounding,
            ~1e-3/~8e-3 relative, is amplified by Σ|coef| in a reconstruction).
        max_pending_writes: Snapshot steps whose files may be queued at once; one more
            snapshot waits for the oldest to be written.
        average_buffers, shadow_dtype, device, foreach, stats_every: As :class:`EMA`.

    Raises:
        InvalidDecayError: a σ_rel/γ out of range, ``update_every`` < 1.
        ValueError: ``snapshot_every`` < 1, an unknown ``time_unit`` or ``snapshot_dtype``.
    """

    kind = "posthoc_ema"

    def __init__(
        self, model: nn.Module, snapshot_dir: str | os.PathLike[str], *, snapshot_every: int,
        sigma_rels: Sequence[float] | None = (0.05, 0.10), gammas: Sequence[float] | None = None,
        time_unit: str = "steps", update_every: int = 1, update_after_step: int = 0,
        snapshot_dtype: torch.dtype = torch.float32, max_pending_writes: int = 2,
        average_buffers: bool = True, shadow_dtype: torch.dtype | None = None,
        device: torch.device | str | None = None, foreach: bool = True, stats_every: int = 0,
    ) -> None:
        if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or (
                snapshot_every < 1):
            raise ValueError(f"Invalid snapshot_every {snapshot_every!r}: expected an int >= 1")
        if time_unit not in TIME_UNITS:
            raise ValueError(f"Invalid time_unit {time_unit!r}: expected one of {TIME_UNITS}")
        if snapshot_dtype not in _SNAPSHOT_DTYPES:
            raise ValueError(
                f"Invalid snapshot_dtype {snapshot_dtype!r}: expected one of {_SNAPSHOT_DTYPES}"
            )
        if gammas is not None:
            sigma_rels = None
        self.time_unit = time_unit
        super().__init__(
            model, schedule="power", sigma_rels=sigma_rels, gammas=gammas,
            update_every=update_every, update_after_step=update_after_step,
            average_buffers=average_buffers, shadow_dtype=shadow_dtype, device=device,
            foreach=foreach, stats_every=stats_every,
        )
        self.gammas = [float(rule.keywords["gamma"]) for rule in self._rules]  # type: ignore[attr-defined]
        self.sigma_rels = (
            [float(s) for s in _as_list(sigma_rels, "sigma_rels")] if sigma_rels is not None
            else [schedules.gamma_to_sigma_rel(g) for g in self.gammas]
        )
        self.snapshot_every = snapshot_every
        self.snapshot_dtype = snapshot_dtype
        self.snapshot_dir = Path(snapshot_dir)
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self.time = 0  # averaging time of the latest update, in time_unit
        self._since_update = 0  # time_unit accumulated since the latest update
        self._snapshot_time = 0  # time of the latest snapshot
        self.snapshot_listeners: list[Callable[[PosthocSnapshot], None]] = []
        self._files = PosthocSnapshotFiles(max_pending_writes)
        self.copied_keys = [s.key for s in self._store.copied_specs]

    def update(self, model: nn.Module, num_samples: int | None = None) -> None:
        """Advance ``step`` by one, update every shadow if due, snapshot if due.

        Args:
            model: The live model (after ``optimizer.step()``).
            num_samples: With ``time_unit="samples"``: samples in this step's batch (the
                global batch under data parallelism), an int ≥ 1. Not allowed otherwise.

        Raises:
            ValueError: ``num_samples`` missing/invalid for samples, given for steps.
            ModelMismatchError: ``model``'s keys or shapes differ from the shadow's.
        """
        advance = self._advance(num_samples)
        self.step += 1
        n = len(self._rules)
        if self.step <= self.update_after_step:
            self._decays = [0.0] * n
            self._apply(model, [1.0] * n)
        else:
            self._since_update += advance
            if (self.step - self.update_after_step) % self.update_every:
                self._apply(model, None)
            else:
                delta, self._since_update = self._since_update, 0
                self.time += delta
                betas = [schedules.power_decay(self.time, g, delta) for g in self.gammas]
                self._apply(model, [self._weight(k, b) for k, b in enumerate(betas)])
        if self.step % self.snapshot_every == 0:
            self.snapshot()

    def _advance(self, num_samples: int | None) -> int:
        if self.time_unit == "steps":
            if num_samples is not None:
                raise ValueError(
                    f"num_samples={num_samples!r} given but time_unit='steps': construct "
                    "PostHocEMA(..., time_unit='samples') to count time in samples"
                )
            return 1
        if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer) or (
                num_samples < 1):
            raise ValueError(
                f"Invalid num_samples {num_samples!r}: time_unit='samples' needs this step's "
                "batch size, an int >= 1 (e.g. update(model, num_samples=len(x)))"
            )
        return int(num_samples)

    def averager_info(self, name: str | None = None) -> dict[str, str | int | float]:
        """As :meth:`EMA.averager_info`, plus the post-hoc fields: ``time``, ``time_unit``,
        ``gamma``, ``sigma_rel``, ``update_every`` and ``update_after_step``.

        Raises:
            UnknownAveragerError: ``name`` is not one of ``averager_names``.
        """
        k = self._index(name)
        return {
            **super().averager_info(name), "time": self.time, "time_unit": self.time_unit,
            "gamma": self.gammas[k], "sigma_rel": self.sigma_rels[k],
            "update_every": self.update_every, "update_after_step": self.update_after_step,
        }

    def snapshot(self) -> list[Path]:
        """Snapshot every shadow now (``update`` does it every ``snapshot_every`` steps).

        Copies the shadows to CPU on this thread and queues the files for the writer
        thread. Does nothing before the first update (time 0 holds no information) and when
        the shadows have not been updated since the previous snapshot.

        Returns:
            The paths the files will have (written once :meth:`flush` returns).
        """
        if self.time <= self._snapshot_time:
            return []
        self._snapshot_time = self.time
        return self._files.take(self)

    @property
    def snapshots(self) -> list[PosthocSnapshot]:
        """The snapshots written so far, oldest first (waits for queued writes first).

        Raises:
            OSError: as :meth:`flush`.
        """
        return self._files.written()

    def flush(self) -> None:
        """Wait until every queued snapshot file is written.

        Raises:
            OSError: writing a snapshot failed (e.g. disk full); logged when it happened.
        """
        self._files.writer.flush()

    def close(self) -> None:
        """Flush and stop the writer thread.

        Raises:
            OSError: as :meth:`flush`.
        """
        self._files.writer.close()

    def solve(
        self, sigma_rel: float | None = None, *, gamma: float | None = None,
        step: int | None = None, warn: bool = True,
    ) -> PosthocSolution:
        """Coefficients for σ_rel (or γ) at snapshot ``step`` (default: the latest).

        Raises:
            InvalidDecayError: no snapshot at ``step``, σ_rel out of range, no snapshots.
        """
        return solve_for_snapshots(
            self.snapshots, sigma_rel=sigma_rel, gamma=gamma, step=step, warn=warn
        )

    def reconstruct(
        self, sigma_rel: float | None = None, *, gamma: float | None = None,
        step: int | None = None,
    ) -> dict[str, Tensor]:
        """The EMA of σ_rel (or γ) at snapshot ``step``, rebuilt from the snapshot files.

        Returns:
            Key → CPU tensor (float32; integer buffers as stored), keyed like
            ``shadow_state_dict()``: load it with ``swap_in``-free code such as
            ``model.load_state_dict(tensors, strict=False)`` on an unwrapped model.

        Raises:
            InvalidDecayError: as :meth:`solve`.
            FileNotFoundError: a snapshot file was removed.
        """
        snapshots = self.snapshots
        solution = solve_for_snapshots(snapshots, sigma_rel=sigma_rel, gamma=gamma, step=step)
        arrays = synthesize_posthoc(snapshots, solution)
        return {key: torch.from_numpy(value) for key, value in arrays.items()}

    def save_reconstruction(
        self, path: str | os.PathLike[str], sigma_rel: float | None = None, *,
        gamma: float | None = None, step: int | None = None,
    ) -> Path:
        """Write :meth:`reconstruct`'s result as a snapshot file (loads with
        :func:`~ema_core.snapshot.load_snapshot`).

        Raises:
            InvalidDecayError: as :meth:`solve`.
            FileNotFoundError: the destination folder does not exist.
        """
        snapshots = self.snapshots
        solution = solve_for_snapshots(snapshots, sigma_rel=sigma_rel, gamma=gamma, step=step)
        arrays = synthesize_posthoc(snapshots, solution)
        return write_synthesis(arrays, synthesis_metadata(snapshots, solution), path)

    def _describe(self, k: int) -> str:
        return f"{super()._describe(k)}, time_unit={self.time_unit}"

    def _extra_state(self) -> dict[str, Any]:
        return {
            **super()._extra_state(), "time": self.time, "since_update": self._since_update,
            "snapshot_time": self._snapshot_time, "snapshots": self._files.state(),
        }

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        super()._load_extra_state(extra)
        self.time = int(extra["time"])
        self._since_update = int(extra["since_update"])
        self._snapshot_time = int(extra["snapshot_time"])
        self._files.load_state(extra["snapshots"])

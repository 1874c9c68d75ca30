"""What-if decay: evaluate EMAs of many σ_rels rebuilt from post-hoc snapshots.

"Which decay would have been best?" — at an evaluation step, rebuild the EMA of each σ_rel
in a grid (default: 10 log-spaced over the well-posed range, :func:`ema_core.posthoc.
posthoc_sigma_rel_grid`) from the post-hoc snapshots, evaluate each, and stream the results
as ``posthoc/<σ_rel>/<metric>`` points (:meth:`ema_core.client.Monitor.log_posthoc`)::

    results = evaluate_posthoc(model, posthoc, eval_fn)    # {0.05: {"accuracy": ...}, ...}
    mon.log_posthoc(step, results)

:func:`sweep_posthoc` is the same loop over snapshot files with any evaluation of a state
dict (``emaboard posthoc`` uses it after training).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ema_core._distributed import is_dtensor
from ema_core._safetensors_mmap import MappedTensors
from ema_core._shadow_specs import gather_live
from ema_core.exceptions import InvalidDecayError, ModelMismatchError
from ema_core.posthoc import posthoc_sigma_rel_grid
from ema_core.posthoc_files import PosthocSnapshot, solve_for_snapshots
from ema_core.posthoc_synthesis import synthesize_posthoc
from ema_core.swap import training_flags_kept

__all__ = ["Metrics", "evaluate_posthoc", "posthoc_grid", "swap_in_weights", "sweep_posthoc"]

logger = logging.getLogger(__name__)

Metrics = dict[str, float]


def posthoc_grid(
    snapshots: Sequence[PosthocSnapshot], *, step: int | None = None, count: int = 10
) -> tuple[int, list[float]]:
    """(the target step, ``count`` σ_rels log-spaced over the well-posed range there).

    Args:
        snapshots: Post-hoc snapshots of one run.
        step: A snapshot step; default the latest.
        count: How many σ_rels (fewer when rounding to 3 digits merges some).

    Raises:
        InvalidDecayError: no snapshots, or none at ``step``.
    """
    if not snapshots:
        raise InvalidDecayError("No post-hoc snapshots to evaluate: call PostHocEMA.snapshot()")
    target = max(s.step for s in snapshots) if step is None else step
    times = [s.time for s in snapshots if s.step == target]
    if not times:
        raise InvalidDecayError(f"No post-hoc snapshot at step {target!r}: pick a snapshot step")
    used = [s for s in snapshots if 0 < s.time <= max(times)]
    grid = posthoc_sigma_rel_grid([s.time for s in used], sigma_rels=[s.sigma_rel for s in used],
                                  target_time=max(times), count=count)
    return target, grid


def sweep_posthoc(
    snapshots: Sequence[PosthocSnapshot], evaluate: Callable[[dict[str, np.ndarray]], Mapping[
        str, Any]], *, sigma_rels: Sequence[float] | None = None, step: int | None = None,
    count: int = 10, on_result: Callable[[float, Metrics], None] | None = None,
) -> dict[float, Metrics]:
    """Rebuild the EMA of each σ_rel at ``step`` from ``snapshots`` and ``evaluate`` it.

    Args:
        snapshots: Post-hoc snapshots of one run (files are read one tensor at a time).
        evaluate: ``state dict of NumPy arrays -> {metric: value}``.
        sigma_rels: σ_rels to evaluate; default :func:`posthoc_grid` (well-posed only).
            Given ones that are ill-posed are evaluated with an
            :class:`~ema_core.exceptions.IllPosedReconstructionWarning`.
        step: A snapshot step; default the latest.
        count: Grid size when ``sigma_rels`` is None.
        on_result: Called with (σ_rel, metrics) after each evaluation (a progress bar).

    Returns:
        σ_rel → metrics (floats), in increasing σ_rel.

    Raises:
        InvalidDecayError: no snapshot at ``step``, a σ_rel outside (0, 0.2887).
        ModelMismatchError: snapshots of different models.
    """
    if step is None:
        step = max((s.step for s in snapshots), default=None)
    grid = list(sigma_rels) if sigma_rels is not None else posthoc_grid(
        snapshots, step=step, count=count)[1]
    results: dict[float, Metrics] = {}
    opened: dict[Path, MappedTensors] = {}  # each file mapped once for the whole sweep
    for sigma in sorted(float(s) for s in grid):
        solution = solve_for_snapshots(snapshots, sigma_rel=sigma, step=step,
                                       warn=sigma_rels is not None)
        metrics = {str(k): float(v) for k, v in evaluate(synthesize_posthoc(
            snapshots, solution, cache=opened)).items()}
        results[sigma] = metrics
        if on_result is not None:
            on_result(sigma, metrics)
    return results


@contextmanager
def swap_in_weights(model: nn.Module, weights: Mapping[str, Tensor]) -> Iterator[nn.Module]:
    """Put ``weights`` (keyed like ``model.state_dict()``, wrapper prefixes stripped) into
    ``model`` for the ``with`` block; restore the live values bit-exactly on exit, also when
    the block raises, and every submodule's ``training`` flag. Runs under ``torch.no_grad``.

    Holds one copy of the live weights meanwhile. Sharded (FSDP2) models are not supported.

    Raises:
        ModelMismatchError: keys or shapes differ, or the model is sharded.
    """
    live = gather_live(model)
    missing = sorted(set(live) - set(weights))
    unexpected = sorted(set(weights) - set(live))
    shapes = [k for k in live if k in weights and tuple(live[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or shapes or any(is_dtensor(t) for t in live.values()):
        raise ModelMismatchError(
            f"Weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shapes differ at {shapes[:5]}; sharded models are not supported): pass the "
            "reconstruction of this model's own snapshots"
        )
    targets = [t.detach() for t in live.values()]
    with torch.no_grad(), training_flags_kept(model):
        spare = [t.clone() for t in targets]
        try:
            for key, t in zip(live, targets, strict=True):
                t.copy_(weights[key])
            yield model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(targets, spare)


def evaluate_posthoc(
    model: nn.Module, posthoc: Any, eval_fn: Callable[[nn.Module], Mapping[str, Any]], *,
    sigma_rels: Sequence[float] | None = None, step: int | None = None, count: int = 10,
) -> dict[float, Metrics]:
    """Evaluate ``model`` with the EMA of each σ_rel rebuilt from ``posthoc``'s snapshots.

    With ``step=None`` the averager is first snapshotted at its current step (if it moved
    since the last snapshot), so the sweep is of "now"; each rebuilt EMA is swapped into
    ``model`` (:func:`swap_in_weights`), ``eval_fn(model)`` runs under ``torch.no_grad``,
    and the live weights are restored bit-exactly.

    Args:
        model: The live model (unsharded; in a DDP job call this on rank 0 only).
        posthoc: A :class:`~ema_core.posthoc_ema.PostHocEMA`.
        eval_fn: ``model -> {metric: value}``; it should call ``model.eval()`` itself.
        sigma_rels: σ_rels; default ``count`` log-spaced over the well-posed range.
        step: A snapshot step; default now.
        count: Grid size when ``sigma_rels`` is None.

    Returns:
        σ_rel → metrics; send them with :meth:`ema_core.client.Monitor.log_posthoc`.

    Raises:
        InvalidDecayError, ModelMismatchError: as :func:`sweep_posthoc`.
    """
    if step is None:
        posthoc.snapshot()
    snapshots = posthoc.snapshots

    def evaluate(arrays: dict[str, np.ndarray]) -> Mapping[str, Any]:
        weights = {k: torch.from_numpy(v) for k, v in arrays.items()}
        with swap_in_weights(model, weights):
            return eval_fn(model)

    results = sweep_posthoc(snapshots, evaluate, sigma_rels=sigma_rels, step=step, count=count)
    logger.debug("what-if decay at step %s: %s", step, results)
    return results

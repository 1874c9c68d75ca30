"""Swap-in evaluation: run the live model with an averager's weights, restore bit-exactly."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ema_core._averager import Averager

__all__ = ["evaluate_all", "swap_in"]

logger = logging.getLogger(__name__)

EvalFn = Callable[[nn.Module], dict[str, float]]


@contextmanager
def swap_in(model: nn.Module, averager: Averager, name: str | None = None) -> Iterator[nn.Module]:
    """Put the shadow ``name`` of ``averager`` into ``model`` for the ``with`` block.

    The live parameters and buffers are copied into one spare buffer (allocated on first use
    and reused: at most one extra copy of the weights), the shadow is copied into the live
    tensors (``copy_`` casts an fp32 shadow to a bf16 model), and on exit — also when the
    block raises — the live values are copied back bit-exactly. Runs under ``torch.no_grad``;
    the module's train/eval mode is left as it is.

    Args:
        model: The live model (same architecture as the averager's; wrappers allowed).
        averager: An :class:`~ema_core.ema.EMA` or :class:`~ema_core.swa.SWA`.
        name: Averager name; default its first averager.

    Yields:
        ``model``, holding the shadow weights.

    Raises:
        UnknownAveragerError: ``name`` is not one of ``averager.averager_names``.
        ModelMismatchError: ``model``'s keys or shapes differ from the shadow's.
        RuntimeError: a ``swap_in`` of the same averager object is already active (its one
            spare buffer holds the live weights); exit it first.
    """
    store = averager._store
    if store.swap_active:
        raise RuntimeError(
            f"swap_in({type(averager).__name__}, {name!r}) inside another swap_in of the same "
            f"{type(averager).__name__}: exit the outer swap_in first (its spare buffer holds "
            "the live weights)"
        )
    live, shadow, spare = averager._swap_lists(model, name)
    with torch.no_grad():
        torch._foreach_copy_(spare, live)
        store.swap_active = True
        try:
            torch._foreach_copy_(live, shadow)
            yield model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, spare)
            store.swap_active = False


def evaluate_all(
    model: nn.Module, averagers: Sequence[Averager], eval_fn: EvalFn, *,
    include_live: bool = True,
) -> dict[str, dict[str, float]]:
    """Run ``eval_fn`` on the live model and on every averager's shadow.

    Args:
        model: The live model; its weights are restored bit-exactly after each shadow.
        averagers: EMA/SWA objects; every averager name of each is evaluated.
        eval_fn: ``model -> {metric: value}``; it should call ``model.eval()`` itself.
        include_live: Also evaluate the live weights, under the key ``"live"``.

    Every call of ``eval_fn`` runs under ``torch.no_grad()``.

    Returns:
        ``{"live": {...}, "ema_0.999": {...}, "swa": {...}}`` with float values.

    Raises:
        ValueError: two averagers share a name.
        UnknownAveragerError, ModelMismatchError: as :func:`swap_in`.
    """
    names = [n for a in averagers for n in a.averager_names]
    if len(set(names)) != len(names) or (include_live and "live" in names):
        raise ValueError(f"Duplicate averager names {names}: each name must be unique")
    results: dict[str, dict[str, float]] = {}
    if include_live:
        with torch.no_grad():
            results["live"] = _floats(eval_fn(model))
    for averager in averagers:
        for name in averager.averager_names:
            with swap_in(model, averager, name):
                results[name] = _floats(eval_fn(model))
            logger.debug("evaluated %s: %s", name, results[name])
    return results


def _floats(metrics: dict[str, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items()}

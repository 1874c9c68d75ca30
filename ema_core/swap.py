"""Swap-in evaluation: run the live model with an averager's weights, restore bit-exactly."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ema_core._averager import Averager
from ema_core._distributed import reshard

__all__ = [
    "EvalFn",
    "evaluate_all",
    "swap_in",
    "training_flags_kept",
]

logger = logging.getLogger(__name__)

EvalFn = Callable[[nn.Module], dict[str, float]]


@contextmanager
def swap_in(model: nn.Module, averager: Averager, name: str | None = None) -> Iterator[nn.Module]:
    """Put the shadow ``name`` of ``averager`` into ``model`` for the ``with`` block.

    The live parameters and buffers are copied into one spare buffer (allocated on first use
    and reused: at most one extra copy of the weights), the shadow is copied into the live
    tensors (``copy_`` casts an fp32 shadow to a bf16 model), and on exit — also when the
    block raises — the live values are copied back bit-exactly. Runs under ``torch.no_grad``.
    Every submodule's ``training`` flag is restored on exit as well, so an evaluation that
    calls ``model.eval()`` inside the block leaves dropout and BatchNorm as it found them.

    On a sharded model (FSDP2) each rank swaps its own shards (no communication) and FSDP2's
    unsharded parameters are freed on entry and exit, so forwards inside the block gather the
    shadow and forwards after it the live weights; every rank must enter the block (as for
    any forward of a sharded model).

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
    with torch.no_grad(), training_flags_kept(model):
        torch._foreach_copy_(spare, live)
        store.swap_active = True
        try:
            torch._foreach_copy_(live, shadow)
            if store.sharded:
                reshard(model)  # drop unsharded copies of the live weights
            yield model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, spare)
                if store.sharded:
                    reshard(model)
            store.swap_active = False


@contextmanager
def training_flags_kept(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every submodule's ``training`` flag on exit, also when the block raises.

    ``model.train(flag)`` would set one flag everywhere; this puts back each module's own
    (a frozen BatchNorm in eval mode inside a model in train mode stays frozen).
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def evaluate_all(
    model: nn.Module, averagers: Sequence[Averager], eval_fn: EvalFn, *,
    include_live: bool = True,
) -> dict[str, dict[str, float]]:
    """Run ``eval_fn`` on the live model and on every averager's shadow.

    Args:
        model: The live model; its weights are restored bit-exactly after each shadow, and
            every submodule's ``training`` flag after each call (also when ``eval_fn`` raises).
        averagers: EMA/SWA objects; every averager name of each is evaluated, except those of
            an averager that holds no average yet (``has_averaged`` False: an SWA before its
            first averaged step, an EMA before its first update), whose shadow is a stale copy
            of the initial weights, not an average: scoring it would compare an average that
            does not exist with the live model.
        eval_fn: ``model -> {metric: value}``; it should call ``model.eval()`` itself.
        include_live: Also evaluate the live weights, under the key ``"live"``.

    Every call of ``eval_fn`` runs under ``torch.no_grad()``.

    Returns:
        ``{"live": {...}, "ema_0.999": {...}, "swa": {...}}`` with float values; averagers
        without an average are absent.

    Raises:
        ValueError: two averagers share a name.
        UnknownAveragerError, ModelMismatchError: as :func:`swap_in`.
    """
    names = [n for a in averagers for n in a.averager_names]
    if len(set(names)) != len(names) or (include_live and "live" in names):
        raise ValueError(f"Duplicate averager names {names}: each name must be unique")
    results: dict[str, dict[str, float]] = {}
    if include_live:
        with torch.no_grad(), training_flags_kept(model):
            results["live"] = _floats(eval_fn(model))
    for averager in averagers:
        if not averager.has_averaged:
            logger.debug("skipped %s: nothing averaged yet", list(averager.averager_names))
            continue
        for name in averager.averager_names:
            with swap_in(model, averager, name):
                results[name] = _floats(eval_fn(model))
            logger.debug("evaluated %s: %s", name, results[name])
    return results


def _floats(metrics: dict[str, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items()}

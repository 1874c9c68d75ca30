"""EMA: one or more exponential-moving-average shadows of a model, updated in one pass."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ema_core import schedules
from ema_core._averager import Averager
from ema_core.exceptions import InvalidDecayError, StateDictError

__all__ = ["EMA", "SCHEDULES"]

SCHEDULES = ("constant", "ramp", "warmup", "power")
"""Schedule names accepted by :class:`EMA` (see :mod:`ema_core.schedules`)."""


class EMA(Averager):
    """Exponential moving averages of a model's weights: ``shadow ← β·shadow + (1 − β)·live``.

    Several shadows (one per decay, or per EDM2 σ_rel/γ) live in flat fp32 storage and are
    updated by one ``torch._foreach_lerp_`` per (device, dtype) group. Floating-point
    parameters and buffers are averaged, integer buffers (``num_batches_tracked``) copied.
    ``step`` is a Python int: an update never waits for the device.

    Step t = ``step − update_after_step``: for t ≤ 0 the shadow copies the live weights; after
    that it is updated when t is a multiple of ``update_every``, with β = schedule(t); the
    ``warmup`` schedule, like timm and diffusers, uses β = 0 at t = 1 and
    ``warmup_decay(t − 1)`` after.

    Args:
        model: The live model (DDP/``torch.compile`` wrappers are fine: their key prefixes
            are stripped). Shadows start as a copy of its weights.
        decays: β (or the asymptotic/maximum β for ``ramp``/``warmup``), each in (0, 1); one
            shadow named ``f"ema_{decay!r}"`` per value. Unused by ``schedule="power"``.
        schedule: ``"constant"``, ``"ramp"`` (ultralytics), ``"warmup"`` (timm/diffusers) or
            ``"power"`` (EDM2); see :mod:`ema_core.schedules`.
        min_decay: Lower clip of the warm-up schedule, in [0, decay].
        update_after_step: Steps during which the shadow just copies the live weights.
        update_every: Update every k-th step (k ≥ 1); ``power`` accounts for k exactly.
        use_warmup: timm spelling of ``schedule="warmup"``.
        warmup_gamma: Warm-up γ (> 0, steps).
        warmup_power: Warm-up power p (> 0); 2/3 (timm default) or 3/4.
        ramp_tau: Ramp time constant τ in steps (> 0).
        sigma_rels: For ``power``: EDM2 relative widths, in (0, 0.2887); names
            ``ema_sigma_rel_<σ>``.
        gammas: For ``power``: exponents γ > 0 instead of ``sigma_rels``; names
            ``ema_gamma_<γ>``.
        bias_correction: Treat the shadow as zero-initialised and report v_t / (1 − Πβ)
            (Adam §3); the first update then copies the live weights.
        average_buffers: Average float buffers (BatchNorm running stats); if False copy them.
        shadow_dtype: Shadow dtype; default fp32 for fp16/bf16 models, else the model's.
        device: Shadow device; default the model's. ``"cpu"`` for a CUDA model keeps the
            shadows in pinned host memory, updated asynchronously (a side-stream copy and a
            worker thread overlapped with the next step; see :meth:`synchronize`).
        foreach: Use foreach kernels; False runs the plain per-tensor reference loop.
        stats_every: Compute :class:`~ema_core.stats.WeightStats` into ``last_stats`` on
            steps divisible by this (0 = never).

    Raises:
        InvalidDecayError: a decay/σ_rel/γ/τ/interval out of range, or an unknown schedule.
        NoFloatParametersError: the model has no floating-point parameters.
        ModelMismatchError: two state-dict keys are equal once ``module.``/``_orig_mod.`` are
            stripped.
        ValueError: duplicate decays, a negative ``stats_every`` or ``update_after_step``.
    """

    kind = "ema"

    def __init__(
        self, model: nn.Module, decays: float | Sequence[float] = 0.9999, *,
        schedule: str = "constant", min_decay: float = 0.0, update_after_step: int = 0,
        update_every: int = 1, use_warmup: bool = False, warmup_gamma: float = 1.0,
        warmup_power: float = 2.0 / 3.0, ramp_tau: float = 2000.0,
        sigma_rels: Sequence[float] | None = None, gammas: Sequence[float] | None = None,
        bias_correction: bool = False, average_buffers: bool = True,
        shadow_dtype: torch.dtype | None = None, device: torch.device | str | None = None,
        foreach: bool = True, stats_every: int = 0,
    ) -> None:
        if use_warmup:
            schedule = "warmup"
        if isinstance(update_every, bool) or not isinstance(update_every, int) or update_every < 1:
            raise InvalidDecayError(f"Invalid update_every {update_every!r}: expected an int >= 1")
        if (isinstance(update_after_step, bool) or not isinstance(update_after_step, int)
                or update_after_step < 0):
            raise ValueError(
                f"Invalid update_after_step {update_after_step!r}: expected an int >= 0"
            )
        self.update_after_step = update_after_step
        self.update_every = update_every
        self.bias_correction = bias_correction
        names, self._rules, self._descriptions = _build_rules(
            decays, schedule, min_decay=min_decay, warmup_gamma=warmup_gamma,
            warmup_power=warmup_power, ramp_tau=ramp_tau, sigma_rels=sigma_rels,
            gammas=gammas, interval=update_every,
        )
        self.schedule = schedule
        self._products = [1.0] * len(names)  # Π β per shadow, for bias correction
        super().__init__(
            model, names, average_buffers=average_buffers, shadow_dtype=shadow_dtype,
            device=device, foreach=foreach, stats_every=stats_every,
        )

    @property
    def has_averaged(self) -> bool:
        """Whether an update has written into the shadows (see :class:`EMA` for when)."""
        return self.step >= 1 and (self.update_after_step >= 1 or self.step >= self.update_every)

    def update(self, model: nn.Module) -> None:
        """Advance ``step`` by one and update every shadow from ``model`` if due.

        Call after ``optimizer.step()``. On stats steps the update is fused with the
        statistics and ``last_stats`` is set.

        Raises:
            ModelMismatchError: ``model``'s keys or shapes differ from the shadow's.
        """
        self.step += 1
        t = self.step - self.update_after_step
        if t <= 0:
            self._decays = [0.0] * len(self._rules)
            self._apply(model, [1.0] * len(self._rules))
        elif t % self.update_every:
            self._apply(model, None)
        else:
            self._apply(model, [self._weight(k, rule(t)) for k, rule in enumerate(self._rules)])

    def _weight(self, k: int, beta: float) -> float:
        """Lerp weight for shadow k given β; records the decay actually applied."""
        if not self.bias_correction:
            self._decays[k] = beta
            return 1.0 - beta
        self._products[k] *= beta
        w = schedules.bias_corrected_weight(beta, self._products[k])
        self._decays[k] = 1.0 - w
        return w

    def _describe(self, k: int) -> str:
        extra = ", bias_correction" if self.bias_correction else ""
        return (
            f"{self._descriptions[k]}{extra}, update_after_step={self.update_after_step}, "
            f"update_every={self.update_every}"
        )

    def _extra_state(self) -> dict[str, Any]:
        return {"decay_products": list(self._products), "schedules":
                [self._describe(k) for k in range(len(self._rules))]}

    def _check_extra_state(self, extra: dict[str, Any]) -> None:
        described = [self._describe(k) for k in range(len(self._rules))]
        if list(extra["schedules"]) != described:
            raise StateDictError(
                f"State was saved with schedules {extra['schedules']}, this EMA has "
                f"{described}: construct the EMA with the same options"
            )

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        self._products = [float(p) for p in extra["decay_products"]]


_Rule = Callable[[int], float]


def _build_rules(
    decays: float | Sequence[float], schedule: str, *, min_decay: float,
    warmup_gamma: float, warmup_power: float, ramp_tau: float,
    sigma_rels: Sequence[float] | None, gammas: Sequence[float] | None, interval: int,
) -> tuple[list[str], list[_Rule], list[str]]:
    """Names, step → β functions and descriptions, one per shadow (validated)."""
    if schedule == "power":
        return _power_rules(sigma_rels, gammas, interval)
    if schedule not in SCHEDULES:
        raise InvalidDecayError(f"Unknown schedule {schedule!r}: expected one of {SCHEDULES}")
    values = _as_list(decays, "decays")
    if not values:
        raise InvalidDecayError("Empty decays: pass at least one decay in (0, 1)")
    betas = [schedules.validate_decay(d) for d in values]
    names = [f"ema_{b!r}" for b in betas]
    if schedule == "constant":
        fns: list[_Rule] = [functools.partial(_constant, decay=b) for b in betas]
        return names, fns, [f"constant(decay={b!r})" for b in betas]
    if schedule == "ramp":
        schedules.ramp_decay(1, betas[0], ramp_tau)  # validates tau
        fns = [functools.partial(schedules.ramp_decay, decay=b, tau=ramp_tau) for b in betas]
        return names, fns, [f"ramp(decay={b!r}, tau={ramp_tau!r})" for b in betas]
    for b in betas:
        schedules.warmup_decay(1, b, warmup_gamma, warmup_power, min_decay)  # validates
    fns = [
        functools.partial(_warmup, decay=b, gamma=warmup_gamma, power=warmup_power,
                          min_decay=min_decay)
        for b in betas
    ]
    return names, fns, [
        f"warmup(decay={b!r}, gamma={warmup_gamma!r}, power={warmup_power!r}, "
        f"min_decay={min_decay!r})" for b in betas
    ]


def _as_list(values: Any, what: str) -> list[Any]:
    """One number (Python, NumPy, or a 0-d tensor as a float) or a sequence, as a list.

    Raises:
        InvalidDecayError: ``values`` is a string or neither a number nor iterable.
    """
    if isinstance(values, torch.Tensor) and values.dim() == 0:
        return [float(values)]
    if isinstance(values, numbers.Real):
        return [values]
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidDecayError(
            f"Invalid {what} {values!r}: expected a number or a sequence of numbers"
        )
    return list(values)


def _constant(t: int, decay: float) -> float:
    return schedules.constant_decay(t, decay)


def _warmup(t: int, decay: float, gamma: float, power: float, min_decay: float) -> float:
    """timm ``ModelEmaV3.get_decay`` / diffusers ``EMAModel.get_decay`` at averaging step t.

    Both evaluate the warm-up at ``t − 1`` (``step − update_after_step − 1``) and return 0,
    unclipped, while that is ≤ 0: the first update copies the live weights.
    """
    if t <= 1:
        return 0.0
    return schedules.warmup_decay(t - 1, decay, gamma, power, min_decay)


def _power_rules(
    sigma_rels: Sequence[float] | None, gammas: Sequence[float] | None, interval: int
) -> tuple[list[str], list[_Rule], list[str]]:
    values: list[float] = []
    if (sigma_rels is None) != (gammas is None):  # exactly one given (NumPy arrays too)
        given = sigma_rels if sigma_rels is not None else gammas
        values = [float(x) for x in _as_list(given, "sigma_rels" if gammas is None else "gammas")]
    if not values:
        raise InvalidDecayError(
            f"Invalid power schedule (sigma_rels={sigma_rels!r}, gammas={gammas!r}): "
            "pass exactly one non-empty list, e.g. sigma_rels=[0.05, 0.1]"
        )
    if sigma_rels is not None:
        widths = values
        gs = [schedules.sigma_rel_to_gamma(s) for s in widths]
        names = [f"ema_sigma_rel_{s!r}" for s in widths]
    else:
        gs = values
        widths = [schedules.gamma_to_sigma_rel(g) for g in gs]
        names = [f"ema_gamma_{g!r}" for g in gs]
    fns: list[_Rule] = [
        functools.partial(schedules.power_decay, gamma=g, interval=interval) for g in gs
    ]
    descriptions = [f"power(gamma={g!r}, sigma_rel={s!r})" for g, s in zip(gs, widths, strict=True)]
    return names, fns, descriptions

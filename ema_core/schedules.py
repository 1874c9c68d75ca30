"""Decay schedules: pure functions from a step to the decay β of one shadow update.

The shadow update is ``shadow ← β·shadow + (1 − β)·live``. ``t`` counts optimizer steps since
averaging started (``step − update_after_step``), so the first update has ``t = update_every``.
All functions take and return plain Python floats; none touches a tensor.

Sources:
    * constant: the classic EMA (Polyak & Juditsky 1992; ``torch.optim.swa_utils``).
    * ramp: ultralytics ``ModelEMA`` (YOLOv5), ``β·(1 − exp(−t/τ))``, τ = 2000.
    * warmup: timm ``ModelEmaV3`` / diffusers ``EMAModel``, ``1 − (1 + t/γ)^(−p)``.
    * power: Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion
      Models" (EDM2, arXiv:2312.02696), eq. 3 and Appendix C; reference code
      ``NVlabs/edm2`` ``training/phema.py``.
    * bias correction: Kingma & Ba 2015 (Adam), §3, for a zero-initialised average.
"""

from __future__ import annotations

import math

import numpy as np

from ema_core.exceptions import InvalidDecayError

__all__ = [
    "SIGMA_REL_MAX",
    "bias_corrected_weight",
    "constant_decay",
    "gamma_to_sigma_rel",
    "power_decay",
    "ramp_decay",
    "sigma_rel_to_gamma",
    "validate_decay",
    "warmup_decay",
]

SIGMA_REL_MAX = math.sqrt(1.0 / 12.0)
"""Largest valid σ_rel (≈ 0.2887): the uniform average, γ → 0."""


def validate_decay(decay: float, what: str = "decay") -> float:
    """Return ``decay`` as a float if ``0 < decay < 1``.

    Raises:
        InvalidDecayError: ``decay`` is outside the open interval (0, 1) or not a number.
    """
    try:
        value = float(decay)
    except (TypeError, ValueError):
        value = math.nan  # not a number: rejected below, naming the value
    if not 0.0 < value < 1.0:
        raise InvalidDecayError(f"Invalid {what} {decay!r}: expected 0 < {what} < 1")
    return value


def _check_step(t: int) -> None:
    if t < 1:
        raise InvalidDecayError(f"Invalid step {t!r}: schedules are defined for t >= 1")


def constant_decay(t: int, decay: float) -> float:
    """Constant schedule: β(t) = decay.

    Args:
        t: Steps since averaging started (≥ 1); unused.
        decay: β in (0, 1).

    Returns:
        ``decay``.
    """
    _check_step(t)
    return decay


def ramp_decay(t: int, decay: float, tau: float = 2000.0) -> float:
    """Exponential ramp of ultralytics ``ModelEMA`` (YOLOv5): β(t) = decay·(1 − exp(−t/τ)).

    Args:
        t: Steps since averaging started (≥ 1).
        decay: Asymptotic decay in (0, 1).
        tau: Ramp time constant in steps (> 0); ultralytics uses 2000.

    Returns:
        β(t) in [0, decay).

    Raises:
        InvalidDecayError: ``tau`` ≤ 0 or ``t`` < 1.
    """
    _check_step(t)
    if not tau > 0:
        raise InvalidDecayError(f"Invalid ramp tau {tau!r}: expected tau > 0 (steps)")
    return decay * -math.expm1(-t / tau)


def warmup_decay(
    t: int, decay: float, gamma: float = 1.0, power: float = 2.0 / 3.0, min_decay: float = 0.0
) -> float:
    """Power warm-up of timm ``ModelEmaV3`` and diffusers ``EMAModel``.

    β(t) = clip(1 − (1 + t/γ)^(−p), min_decay, decay). timm and diffusers default to γ = 1
    and p = 2/3 (p = 3/4 suits shorter runs). Both evaluate it at the number of updates
    before the current one (``step − update_after_step − 1``) and use β = 0 for the first
    update; :class:`~ema_core.ema.EMA` does the same.

    Args:
        t: Steps since averaging started (≥ 1).
        decay: Upper clip, in (0, 1).
        gamma: Warm-up inverse scale γ (> 0), in steps.
        power: Warm-up power p (> 0).
        min_decay: Lower clip, in [0, decay].

    Returns:
        β(t) in [min_decay, decay].

    Raises:
        InvalidDecayError: ``gamma`` or ``power`` ≤ 0, ``min_decay`` outside [0, decay].
    """
    _check_step(t)
    if not (gamma > 0 and power > 0):
        raise InvalidDecayError(
            f"Invalid warm-up gamma={gamma!r}, power={power!r}: expected both > 0"
        )
    if not 0.0 <= min_decay <= decay:
        raise InvalidDecayError(
            f"Invalid min_decay {min_decay!r}: expected 0 <= min_decay <= decay ({decay!r})"
        )
    value: float = 1.0 - (1.0 + t / gamma) ** (-power)
    return min(max(value, min_decay), decay)


def power_decay(t: int, gamma: float, interval: int = 1) -> float:
    """EDM2 power-function EMA, exact for a shadow updated every ``interval`` steps.

    β(t) = ((t − k)/t)^(γ+1) with k = ``interval``. For k = 1 this is EDM2 eq. 3,
    β(t) = (1 − 1/t)^(γ+1). The shadow then equals Σ_τ (τ^(γ+1) − (τ−k)^(γ+1))·x_τ / t^(γ+1)
    over the update steps τ = k, 2k, …, t: the power-function average with weights ∝ τ^γ.
    Using (1 − 1/t)^(γ+1) when updating only every k steps (a known bug) averages over a far
    too long window. Reference: NVlabs/edm2 ``power_function_beta(std, t_next, t_delta)``.

    Args:
        t: Steps since averaging started; a multiple of ``interval`` (≥ ``interval``).
        gamma: Power exponent γ (> 0); see :func:`sigma_rel_to_gamma`.
        interval: Steps between two shadow updates (k ≥ 1).

    Returns:
        β(t) in [0, 1); exactly 0 at the first update (t = k), which copies the weights.

    Raises:
        InvalidDecayError: ``gamma`` ≤ 0, ``interval`` < 1 or ``t`` < ``interval``.
    """
    _check_step(t)
    if not gamma > 0:
        raise InvalidDecayError(f"Invalid power gamma {gamma!r}: expected gamma > 0")
    if interval < 1 or t < interval:
        raise InvalidDecayError(
            f"Invalid interval {interval!r} at step {t!r}: expected 1 <= interval <= t"
        )
    return float(((t - interval) / t) ** (gamma + 1.0))


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """Convert EDM2's relative width σ_rel to the power exponent γ.

    σ_rel² = (γ+1) / ((γ+2)²(γ+3)) (EDM2 eq. 4). γ is the largest real root of
    γ³ + 7γ² + (16 − σ_rel⁻²)γ + (12 − σ_rel⁻²) = 0 (NVlabs/edm2 ``std_to_exp``).
    Examples: σ_rel = 0.05 → γ ≈ 16.97; σ_rel = 0.10 → γ ≈ 6.94.

    Args:
        sigma_rel: Relative standard deviation of the averaging profile, in (0, √(1/12)).

    Returns:
        γ > 0.

    Raises:
        InvalidDecayError: ``sigma_rel`` outside (0, √(1/12) ≈ 0.2887).
    """
    if not 0.0 < sigma_rel < SIGMA_REL_MAX:
        raise InvalidDecayError(
            f"Invalid sigma_rel {sigma_rel!r}: expected 0 < sigma_rel < {SIGMA_REL_MAX:.4f}"
        )
    inv = sigma_rel**-2
    roots = np.roots([1.0, 7.0, 16.0 - inv, 12.0 - inv])
    real: float = roots.real[np.abs(roots.imag) < 1e-9].max().item()
    return real


def gamma_to_sigma_rel(gamma: float) -> float:
    """Convert the EDM2 power exponent γ to σ_rel = √((γ+1) / ((γ+2)²(γ+3))) (EDM2 eq. 4).

    Raises:
        InvalidDecayError: ``gamma`` ≤ 0.
    """
    if not gamma > 0:
        raise InvalidDecayError(f"Invalid power gamma {gamma!r}: expected gamma > 0")
    return math.sqrt((gamma + 1.0) / ((gamma + 2.0) ** 2 * (gamma + 3.0)))


def bias_corrected_weight(decay: float, decay_product: float) -> float:
    """Lerp weight that keeps a shadow equal to the bias-corrected, zero-initialised EMA.

    With v₀ = 0, v_t = β_t·v_{t−1} + (1 − β_t)·x_t and P_t = Π_{i≤t} β_i, the corrected
    average is v̂_t = v_t / (1 − P_t) (Adam, Kingma & Ba 2015, §3). Because
    1 − P_t = β_t(1 − P_{t−1}) + (1 − β_t), the corrected value itself follows
    v̂_t = v̂_{t−1} + w_t·(x_t − v̂_{t−1}) with w_t = (1 − β_t)/(1 − P_t), so the shadow stores
    v̂ directly. At t = 1, w = 1: the shadow equals the first value.

    Args:
        decay: β_t of this update, in [0, 1).
        decay_product: P_t = Π β_i including this update's β_t, in [0, 1).

    Returns:
        w_t in (0, 1].
    """
    return (1.0 - decay) / (1.0 - decay_product)

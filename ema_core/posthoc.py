"""Post-hoc EMA solver: coefficients that rebuild any σ_rel from stored power-EMA snapshots.

NumPy only (no torch): the server imports it to synthesise checkpoints.

A power-function EMA of exponent γ read at training time t averages the weights with the
profile p(τ) = (γ+1)·τ^γ / t^(γ+1) on 0 < τ ≤ t (EDM2, Karras et al. 2024, arXiv:2312.02696,
eq. 3 and App. C). Snapshots of a few such EMAs (default σ_rel 0.05 and 0.10) taken every
``snapshot_every`` steps span a space of profiles; the EMA of any other σ_rel at a snapshot
time t_out is approximated by the combination Σ c_i·snapshot_i whose profile is the
least-squares fit, in L²(0, ∞), to the target profile (App. C.3, Algorithm 3). The Gram
matrix of the profiles has the closed form (App. C.3, eq. 151; NVlabs/edm2
``training/phema.py``)::

    ⟨p_a, p_b⟩ = (γ_a+1)(γ_b+1) / ((γ_a+γ_b+1)·t_b) · (t_a/t_b)^γ_b    for t_a ≤ t_b.

The fit is exact in the sense that matters: ``ema_core``'s power schedule, with
``update_every = k`` or with time counted in samples, weights each visited state x_j by
exactly ∫ p(τ) dτ over the time x_j was the live model (τ_{j−1}, τ_j], so every snapshot is
the continuous profile applied to the piecewise-constant training trajectory, and the
reconstruction error is the profile residual applied to that same trajectory.

The constant-β EMA equivalent to a σ_rel at a step is in :mod:`ema_core.effective_length`.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ema_core._posthoc_inputs import finite, input_gammas, target_gamma_of
from ema_core.exceptions import IllPosedReconstructionWarning, InvalidDecayError
from ema_core.schedules import SIGMA_REL_MAX, gamma_to_sigma_rel

__all__ = [
    "DEFAULT_MAX_RESIDUAL",
    "MAX_CONDITION",
    "PosthocSolution",
    "posthoc_sigma_rel_grid",
    "profile_inner_product",
    "solve_posthoc_coefficients",
]

DEFAULT_MAX_RESIDUAL = 0.05
"""Largest relative L² error of the fitted profile for which a target counts as well-posed."""

MAX_CONDITION = 1e12
"""Condition number of the (unit-diagonal) Gram matrix above which snapshots are degenerate."""

_Floats = NDArray[np.float64]


def profile_inner_product(
    t_a: ArrayLike, gamma_a: ArrayLike, t_b: ArrayLike, gamma_b: ArrayLike
) -> _Floats:
    """⟨p_a, p_b⟩ = ∫₀^∞ p_a(τ)·p_b(τ) dτ of two power-function EMA profiles, broadcast.

    p(τ) = (γ+1)·τ^γ / t^(γ+1) on (0, t], 0 after. Closed form (EDM2 App. C.3, eq. 151):
    (γ_a+1)(γ_b+1) / ((γ_a+γ_b+1)·max(t_a, t_b)) · (min/max)^γ of the later profile.

    Args:
        t_a, t_b: Read-out times (> 0, any unit; the result is in 1/unit).
        gamma_a, gamma_b: Exponents γ (> 0).

    Returns:
        float64 array of the broadcast shape.
    """
    ta, ga, tb, gb = (np.asarray(v, dtype=np.float64) for v in (t_a, gamma_a, t_b, gamma_b))
    later_gamma = np.where(ta <= tb, gb, ga)
    t_max = np.maximum(ta, tb)
    ratio = np.minimum(ta, tb) / t_max
    out: _Floats = (ga + 1) * (gb + 1) / ((ga + gb + 1) * t_max) * ratio**later_gamma
    return out


@dataclass(frozen=True)
class PosthocSolution:
    """Coefficients of one post-hoc reconstruction and how well-posed it is.

    Attributes:
        coefficients: (n,) float64, one per input snapshot in input order; 0 for snapshots
            not used (time ≤ 0 or after ``target_time``); the used ones sum to 1.
        used: (n,) bool, the snapshots with 0 < time ≤ ``target_time``.
        target_time: Read-out time, in the snapshots' unit.
        target_gamma: γ of the target profile.
        target_sigma_rel: σ_rel of the target profile.
        condition_number: 2-norm condition number of the Gram matrix of the used profiles
            scaled to unit norm (scale-free; large means near-duplicate snapshots).
        sum_abs: Σ|c_i|: 1 for a convex combination; the factor by which rounding noise in
            the snapshots (e.g. fp16) is amplified.
        residual: ‖Σ c_i p_i − p_target‖ / ‖p_target‖ in L², the relative error of the
            reconstructed profile (0 when the target itself was snapshotted).
        ill_posed: Why the target is ill-posed, one sentence each; empty when well-posed.
    """

    coefficients: _Floats
    used: NDArray[np.bool_]
    target_time: float
    target_gamma: float
    target_sigma_rel: float
    condition_number: float
    sum_abs: float
    residual: float
    ill_posed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists and floats)."""
        return {
            "coefficients": self.coefficients.tolist(), "used": self.used.tolist(),
            "target_time": self.target_time, "target_gamma": self.target_gamma,
            "target_sigma_rel": self.target_sigma_rel,
            "condition_number": self.condition_number, "sum_abs": self.sum_abs,
            "residual": self.residual, "ill_posed": list(self.ill_posed),
        }


def solve_posthoc_coefficients(
    times: ArrayLike, *, sigma_rels: ArrayLike | None = None, gammas: ArrayLike | None = None,
    target_time: float, target_sigma_rel: float | None = None,
    target_gamma: float | None = None, max_residual: float = DEFAULT_MAX_RESIDUAL,
    warn: bool = True,
) -> PosthocSolution:
    """Least-squares coefficients that rebuild the EMA of a target σ_rel (or γ) at a time.

    Solves G c = b in float64, G_ij = ⟨p_i, p_j⟩ and b_i = ⟨p_i, p_target⟩ over the snapshots
    with 0 < time ≤ ``target_time`` (EDM2 App. C.3, Algorithm 3), then scales c to sum to 1
    (the target profile has unit mass). Times are divided by ``target_time`` first and G is
    scaled to a unit diagonal before the solve; neither changes the solution.

    Args:
        times: (n,) training time of each snapshot (steps or samples since averaging
            started; the ``time`` metadata entry of a post-hoc snapshot).
        sigma_rels: (n,) σ_rel of each snapshot's EMA; or ``gammas``: (n,) their γ.
        target_time: Time to reconstruct at; a snapshot must exist at exactly this time.
        target_sigma_rel: σ_rel to reconstruct, in (0, 0.2887); or ``target_gamma`` (> 0).
        max_residual: A relative profile error above this makes the target ill-posed.
        warn: Emit :class:`~ema_core.exceptions.IllPosedReconstructionWarning` when the
            target is ill-posed (the reasons are in ``ill_posed`` either way).

    Returns:
        A :class:`PosthocSolution`.

    Raises:
        InvalidDecayError: a σ_rel outside (0, 0.2887), γ ≤ 0, a non-finite time, lengths
            that differ, no snapshot at ``target_time``, none with 0 < time ≤ ``target_time``,
            or two snapshots with the same time and γ.
    """
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    g = input_gammas(t.size, sigma_rels, gammas)
    g_out = target_gamma_of(target_sigma_rel, target_gamma)
    t_out = finite(target_time, "target_time")
    if not np.all(np.isfinite(t)):
        raise InvalidDecayError(f"Invalid snapshot times {t.tolist()[:8]}: expected finite")
    used = (t > 0) & (t <= t_out)
    if t_out <= 0 or not np.any(t[used] == t_out):
        shown = sorted(set(t.tolist()))
        raise InvalidDecayError(
            f"No snapshot at target time {target_time!r}: snapshots exist at times "
            f"{shown[:5]}{' ... ' + str(shown[-5:]) if len(shown) > 5 else ''}; reconstruct at "
            "one of them"
        )
    u, gu = t[used] / t_out, g[used]
    pairs = set(zip(u.tolist(), gu.tolist(), strict=True))
    if len(pairs) != u.size:
        raise InvalidDecayError(
            "Two snapshots with the same time and gamma: pass each snapshot once"
        )
    x, cond, residual = _solve(u, gu, g_out)
    coefficients = np.zeros_like(t)
    coefficients[used] = x
    sigma_out = gamma_to_sigma_rel(g_out)
    reasons = _ill_posed(sigma_out, gu, cond, residual, max_residual, float(np.abs(x).sum()))
    if reasons and warn:
        warnings.warn(
            f"Post-hoc EMA sigma_rel={sigma_out:.4g} at time {t_out:g} is ill-posed: "
            + "; ".join(reasons), IllPosedReconstructionWarning, stacklevel=2,
        )
    return PosthocSolution(
        coefficients=coefficients, used=used, target_time=t_out, target_gamma=g_out,
        target_sigma_rel=sigma_out, condition_number=cond, sum_abs=float(np.abs(x).sum()),
        residual=residual, ill_posed=reasons,
    )


@functools.lru_cache(maxsize=8)
def _gram(u_bytes: bytes, g_bytes: bytes) -> tuple[_Floats, _Floats, _Floats, float]:
    """(Gram matrix, unit-diagonal Gram matrix, diagonal scale, condition number) of the
    profiles with scaled times ``u`` and exponents ``g`` (float64 bytes), cached: a sweep
    over many targets at one time solves the same system again and again."""
    u, g = np.frombuffer(u_bytes), np.frombuffer(g_bytes)
    gram = profile_inner_product(u[:, None], g[:, None], u[None, :], g[None, :])  # (n, n)
    scale = np.sqrt(np.diag(gram))
    unit = gram / scale[:, None] / scale[None, :]
    return gram, unit, scale, float(np.linalg.cond(unit))


def _solve(u: _Floats, g: _Floats, g_out: float) -> tuple[_Floats, float, float]:
    """(coefficients summing to 1, condition number, relative residual); times scaled to 1."""
    gram, unit, scale, cond = _gram(np.ascontiguousarray(u).tobytes(),
                                    np.ascontiguousarray(g).tobytes())
    rhs = profile_inner_product(u, g, 1.0, g_out)  # (n,)
    try:
        x = np.linalg.solve(unit, rhs / scale) / scale
    except np.linalg.LinAlgError as error:
        raise InvalidDecayError(
            f"The {u.size} snapshot profiles are linearly dependent ({error}): pass distinct "
            "snapshots"
        ) from error
    total = x.sum()
    if not abs(total) > 1e-12:
        raise InvalidDecayError(
            f"Post-hoc coefficients sum to {total!r}: the target profile is orthogonal to "
            "every snapshot; pass snapshots that cover its time range"
        )
    x = x / total
    target_sq = float(profile_inner_product(1.0, g_out, 1.0, g_out))
    err_sq = float(x @ gram @ x - 2.0 * x @ rhs) + target_sq
    return x, cond, math.sqrt(max(err_sq, 0.0) / target_sq)


def _ill_posed(
    sigma_out: float, g_used: _Floats, cond: float, residual: float, max_residual: float,
    sum_abs: float,
) -> tuple[str, ...]:
    reasons = []
    smallest = min(gamma_to_sigma_rel(float(x)) for x in g_used)
    if sigma_out < smallest * (1 - 1e-9):
        reasons.append(
            f"sigma_rel {sigma_out:.4g} is narrower than every snapshot's (smallest "
            f"{smallest:.4g}): it is built from differences of snapshots (sum |coef| = "
            f"{sum_abs:.3g}), which amplifies their noise; track a smaller sigma_rel"
        )
    if residual > max_residual:
        reasons.append(
            f"the snapshots fit its profile only to a relative L2 error of {residual:.3g} "
            f"(> {max_residual:g}): snapshot more often or keep more early snapshots"
        )
    if cond > MAX_CONDITION:
        reasons.append(
            f"the snapshot Gram matrix has condition number {cond:.3g} (> {MAX_CONDITION:g}): "
            "near-duplicate snapshots"
        )
    return tuple(reasons)


def posthoc_sigma_rel_grid(
    times: ArrayLike, *, sigma_rels: ArrayLike, target_time: float, count: int = 10,
    max_residual: float = DEFAULT_MAX_RESIDUAL, significant: int = 3,
) -> list[float]:
    """σ_rels to evaluate at ``target_time``: ``count`` values log-spaced over the
    well-posed range, rounded to ``significant`` digits (they name metric keys).

    The range runs from the smallest snapshot σ_rel up to the largest σ_rel (at most
    0.28) whose reconstruction is not ill-posed (relative profile error ≤ ``max_residual``).

    Returns:
        Increasing distinct σ_rels (fewer than ``count`` when rounding merges some).

    Raises:
        InvalidDecayError: as :func:`solve_posthoc_coefficients`; ``count`` < 1.
    """
    if count < 1:
        raise InvalidDecayError(f"Invalid count {count!r}: expected >= 1")
    widths = np.atleast_1d(np.asarray(sigma_rels, dtype=np.float64))
    lo = float(widths.min())
    hi = lo
    for candidate in np.geomspace(float(widths.max()), 0.28, 24):
        solution = solve_posthoc_coefficients(
            times, sigma_rels=widths, target_time=target_time,
            target_sigma_rel=float(candidate), max_residual=max_residual, warn=False,
        )
        if solution.ill_posed:
            break
        hi = float(candidate)
    grid = np.geomspace(lo, max(hi, lo), count) if count > 1 else np.array([lo])
    rounded = sorted({float(f"{x:.{significant}g}") for x in grid})
    return [x for x in rounded if 0 < x < SIGMA_REL_MAX]

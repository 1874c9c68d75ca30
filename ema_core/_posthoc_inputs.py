"""What a post-hoc solve is asked, checked (private; NumPy only, as :mod:`ema_core.posthoc`).

The snapshots' profiles come as exactly one of σ_rels or γs, one per snapshot time; the
target as exactly one of σ_rel and γ; every number finite, every σ_rel in (0, 0.2887) and
every γ > 0 (:func:`ema_core.schedules.sigma_rel_to_gamma`). Errors are
:class:`~ema_core.exceptions.InvalidDecayError` naming the value and the remedy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ema_core.exceptions import InvalidDecayError
from ema_core.schedules import gamma_to_sigma_rel, sigma_rel_to_gamma


def target_gamma_of(sigma_rel: float | None, gamma: float | None) -> float:
    """γ of the target, given as exactly one of σ_rel and γ.

    Raises:
        InvalidDecayError: both or neither given, a non-finite value, σ_rel out of range,
            γ ≤ 0.
    """
    if (sigma_rel is None) == (gamma is None):
        raise InvalidDecayError(
            f"Invalid target (target_sigma_rel={sigma_rel!r}, target_gamma={gamma!r}): pass "
            "exactly one of them"
        )
    if sigma_rel is not None:
        return sigma_rel_to_gamma(finite(sigma_rel, "target_sigma_rel"))
    g = finite(gamma, "target_gamma")
    gamma_to_sigma_rel(g)  # validates γ > 0
    return g


def finite(value: Any, what: str) -> float:
    """``value`` as a finite float.

    Raises:
        InvalidDecayError: naming ``what``, when it is not a finite number.
    """
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if not math.isfinite(out):
        raise InvalidDecayError(f"Invalid {what} {value!r}: expected a finite number")
    return out


def input_gammas(
    n: int, sigma_rels: ArrayLike | None, gammas: ArrayLike | None
) -> NDArray[np.float64]:
    """(n,) γ of the snapshots, given as exactly one of ``sigma_rels`` and ``gammas``.

    Raises:
        InvalidDecayError: both or neither given, not one per snapshot time, a σ_rel out of
            range, a γ ≤ 0.
    """
    if (sigma_rels is None) == (gammas is None):
        raise InvalidDecayError(
            "Invalid snapshot profiles: pass exactly one of sigma_rels= or gammas= (one per "
            "snapshot time)"
        )
    raw = np.atleast_1d(np.asarray(sigma_rels if gammas is None else gammas, dtype=np.float64))
    if raw.shape != (n,):
        raise InvalidDecayError(
            f"Got {raw.size} snapshot {'gammas' if sigma_rels is None else 'sigma_rels'} for "
            f"{n} snapshot times: pass one per snapshot"
        )
    if gammas is None:
        return np.array([sigma_rel_to_gamma(float(s)) for s in raw])
    for g in raw:
        gamma_to_sigma_rel(float(g))  # validates γ > 0
    return raw

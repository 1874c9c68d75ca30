"""Effective length of an EMA: half-life, σ_rel and the constant-β equivalent of a σ_rel.

Torch-free (the server uses it; the dashboard ports the same formulas to JavaScript).

Width of an average = the standard deviation of the age of the weights it averages. A
constant-decay EMA updated every k steps weights the state of age a·k steps by (1−β)β^a:
width k·√β/(1−β) steps, half-life k·ln 2/(−ln β) steps. The EDM2 power profile of σ_rel
read at step t has width σ_rel·t (σ_rel is defined as width / training time; Karras et al.
2024, arXiv:2312.02696, Sec. 3). So the constant β with the width of σ_rel at step t is
β = u² with u = (√(1+4s²) − 1)/(2s), s = σ_rel·t/k (:func:`sigma_rel_to_decay`), and a
constant β read at step t has σ_rel = k·√β/(1−β)/t (:func:`decay_to_sigma_rel`).

Across batch sizes, compare half-lives in samples (steps × batch size): the EMA scaling rule
(Busbridge et al. 2023, "How to Scale Your EMA", arXiv:2307.13813) keeps it fixed by using
β^κ for a κ-times larger batch.
"""

from __future__ import annotations

import math

from ema_core.exceptions import InvalidDecayError
from ema_core.schedules import sigma_rel_to_gamma

__all__ = ["decay_half_life", "decay_to_sigma_rel", "sigma_rel_to_decay"]


def sigma_rel_to_decay(sigma_rel: float, t: float, update_every: int = 1) -> float:
    """Constant decay β whose EMA has the same width as the σ_rel profile at time ``t``.

    Width = standard deviation of the averaged weights' age: σ_rel·t for the power profile,
    k·√β/(1−β) for a constant β applied every k steps. Solving gives β = u² with
    u = (√(1+4s²) − 1)/(2s), s = σ_rel·t/k. Example: σ_rel 0.10 at step 10,000 → β ≈ 0.99900.

    Args:
        sigma_rel: In (0, 0.2887).
        t: Training time in steps (> 0).
        update_every: Steps between updates of the constant-β EMA (k ≥ 1).

    Returns:
        β in (0, 1).

    Raises:
        InvalidDecayError: ``sigma_rel`` outside (0, 0.2887), ``t`` ≤ 0, ``update_every`` < 1.
    """
    sigma_rel_to_gamma(sigma_rel)  # validates the range
    if not t > 0 or update_every < 1:
        raise InvalidDecayError(
            f"Invalid time {t!r} / update_every {update_every!r}: expected t > 0 and k >= 1"
        )
    s = sigma_rel * t / update_every
    u = 2.0 * s / (math.sqrt(1.0 + 4.0 * s * s) + 1.0)  # = (√(1+4s²) − 1)/(2s), no cancellation
    return u * u


def decay_to_sigma_rel(decay: float, t: float, update_every: int = 1) -> float:
    """σ_rel of a constant-β EMA at time ``t``: k·√β/(1−β)/t (inverse of
    :func:`sigma_rel_to_decay`; may exceed 0.2887 early in training, when the EMA is wider
    than any power profile).

    Raises:
        InvalidDecayError: ``decay`` outside (0, 1), ``t`` ≤ 0 or ``update_every`` < 1.
    """
    if not 0.0 < decay < 1.0 or not t > 0 or update_every < 1:
        raise InvalidDecayError(
            f"Invalid decay {decay!r} / time {t!r} / update_every {update_every!r}: expected "
            "0 < decay < 1, t > 0, k >= 1"
        )
    return update_every * math.sqrt(decay) / (1.0 - decay) / t


def decay_half_life(decay: float, update_every: int = 1) -> float:
    """Steps after which a constant-β EMA's weight on a state has halved: k·ln 2/(−ln β).

    Multiply by the batch size for the half-life in samples; the EMA scaling rule
    (Busbridge et al. 2023, "How to Scale Your EMA") keeps that constant: β^κ for a
    κ-times larger batch.

    Raises:
        InvalidDecayError: ``decay`` outside (0, 1) or ``update_every`` < 1.
    """
    if not 0.0 < decay < 1.0 or update_every < 1:
        raise InvalidDecayError(
            f"Invalid decay {decay!r} / update_every {update_every!r}: expected 0 < decay < 1 "
            "and k >= 1"
        )
    return update_every * math.log(2.0) / -math.log(decay)


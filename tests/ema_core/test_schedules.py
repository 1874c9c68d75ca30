"""Each decay schedule against its formula on hand-computed values."""

from __future__ import annotations

import math

import pytest

from ema_core.exceptions import InvalidDecayError
from ema_core.schedules import (
    SIGMA_REL_MAX,
    bias_corrected_weight,
    constant_decay,
    gamma_to_sigma_rel,
    power_decay,
    ramp_decay,
    sigma_rel_to_gamma,
    validate_decay,
    warmup_decay,
)


def test_constant_decay_is_the_decay_at_every_step() -> None:
    assert [constant_decay(t, 0.999) for t in (1, 10, 10_000)] == [0.999] * 3


def test_ramp_decay_hand_values() -> None:
    # β·(1 − e^(−t/τ)): at t = τ the ramp reaches 1 − 1/e ≈ 0.6321205588 of β.
    expected = 0.9999 * 0.6321205588285577
    assert ramp_decay(2000, 0.9999, 2000.0) == pytest.approx(expected, rel=1e-15)
    assert ramp_decay(1, 0.5, 1.0) == pytest.approx(0.5 * (1 - math.exp(-1)), rel=1e-15)
    assert ramp_decay(100_000, 0.9, 10.0) == 0.9


def test_warmup_decay_hand_values() -> None:
    # 1 − (1 + t/γ)^(−p)
    assert warmup_decay(1, 0.9999) == pytest.approx(1 - 2 ** (-2 / 3), rel=1e-15)  # 0.37004
    assert warmup_decay(7, 0.9999, gamma=1.0, power=1.0) == pytest.approx(0.875, rel=1e-15)
    assert warmup_decay(3, 0.9999, gamma=3.0, power=2.0) == pytest.approx(0.75, rel=1e-15)


def test_warmup_decay_is_clipped_to_min_and_max() -> None:
    assert warmup_decay(10**9, 0.999, power=1.0) == 0.999
    assert warmup_decay(1, 0.999, min_decay=0.5) == 0.5


def test_power_decay_every_step_is_edm2_eq3() -> None:
    # (1 − 1/t)^(γ+1)
    assert power_decay(1, gamma=7.0) == 0.0
    assert power_decay(2, gamma=1.0) == 0.25
    assert power_decay(4, gamma=2.0) == pytest.approx(0.75**3, rel=1e-15)


def test_power_decay_accounts_for_the_update_interval() -> None:
    # ((t − k)/t)^(γ+1), not (1 − 1/t)^(γ+1)
    assert power_decay(10, gamma=1.0, interval=5) == 0.25
    assert power_decay(4, gamma=7.0, interval=2) == 0.5**8
    assert power_decay(10, gamma=1.0, interval=5) != power_decay(10, gamma=1.0)


@pytest.mark.parametrize(("sigma_rel", "gamma"), [(0.05, 16.97), (0.10, 6.94)])
def test_sigma_rel_to_gamma_matches_edm2_values(sigma_rel: float, gamma: float) -> None:
    # EDM2 §3.1: σ_rel = 0.05 ↔ γ ≈ 16.97 and σ_rel = 0.10 ↔ γ ≈ 6.94.
    assert sigma_rel_to_gamma(sigma_rel) == pytest.approx(gamma, abs=5e-3)
    round_trip = gamma_to_sigma_rel(sigma_rel_to_gamma(sigma_rel))
    assert round_trip == pytest.approx(sigma_rel, rel=1e-12)


def test_gamma_to_sigma_rel_formula() -> None:
    # √((γ+1)/((γ+2)²(γ+3))) at γ = 1: √(2/36)
    assert gamma_to_sigma_rel(1.0) == pytest.approx(math.sqrt(2 / 36), rel=1e-15)


def test_bias_corrected_weight_first_step_copies_then_adam_formula() -> None:
    assert bias_corrected_weight(0.9, 0.9) == 1.0
    assert bias_corrected_weight(0.9, 0.81) == pytest.approx(0.1 / 0.19, rel=1e-15)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1, float("nan")])
def test_validate_decay_rejects_values_outside_open_interval(bad: float) -> None:
    message = rf"^Invalid decay {bad!r}: expected 0 < decay < 1$"
    with pytest.raises(InvalidDecayError, match=message):
        validate_decay(bad)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ramp_decay(1, 0.9, 0.0), r"^Invalid ramp tau 0.0: expected tau > 0 \(steps\)$"),
        (lambda: warmup_decay(1, 0.9, gamma=0.0, power=1.0),
         r"^Invalid warm-up gamma=0.0, power=1.0: expected both > 0$"),
        (lambda: warmup_decay(1, 0.9, min_decay=0.95),
         r"^Invalid min_decay 0.95: expected 0 <= min_decay <= decay \(0.9\)$"),
        (lambda: power_decay(1, gamma=-1.0), r"^Invalid power gamma -1.0: expected gamma > 0$"),
        (lambda: power_decay(3, gamma=1.0, interval=5),
         r"^Invalid interval 5 at step 3: expected 1 <= interval <= t$"),
        (lambda: constant_decay(0, 0.9), r"^Invalid step 0: schedules are defined for t >= 1$"),
        (lambda: sigma_rel_to_gamma(0.3),
         rf"^Invalid sigma_rel 0.3: expected 0 < sigma_rel < {SIGMA_REL_MAX:.4f}$"),
        (lambda: gamma_to_sigma_rel(0.0), r"^Invalid power gamma 0.0: expected gamma > 0$"),
    ],
)
def test_schedule_argument_errors_name_value_and_remedy(call, message: str) -> None:
    with pytest.raises(InvalidDecayError, match=message):
        call()

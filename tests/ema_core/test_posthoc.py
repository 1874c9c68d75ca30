"""Post-hoc EMA solver (NumPy only): closed-form inner products, coefficients, ill-posedness."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from ema_core.effective_length import decay_half_life, decay_to_sigma_rel, sigma_rel_to_decay
from ema_core.exceptions import IllPosedReconstructionWarning, InvalidDecayError
from ema_core.posthoc import (
    posthoc_sigma_rel_grid,
    profile_inner_product,
    solve_posthoc_coefficients,
)
from ema_core.schedules import sigma_rel_to_gamma


def snapshot_grid(n: int, every: float = 1000.0, sigma_rels=(0.05, 0.10)):
    """Times and σ_rels of n snapshots of each tracked EMA, every ``every`` time units."""
    times = np.repeat(np.arange(1, n + 1) * every, len(sigma_rels))
    return times, np.tile(sigma_rels, n)


# --- a float64 transcription of the paper (EDM2 App. C.3: eq. 123–126, eq. 151, Alg. 3) ---

def paper_gamma(sigma_rel: float) -> float:
    """Eq. 126 / Algorithm 2: the largest real root of the cubic in γ."""
    tmp = sigma_rel**-2
    return float(np.roots([1, 7, 16 - tmp, 12 - tmp]).real.max())


def paper_correlation(t_a, sigma_a, t_b, sigma_b) -> float:
    """Eq. 151 / Algorithm 3 for one pair of profiles, in raw (unscaled) time."""
    a, b = paper_gamma(sigma_a), paper_gamma(sigma_b)
    if t_a < t_b:
        return (a + 1) * (b + 1) * (t_a / t_b) ** b / ((a + b + 1) * t_b)
    return (a + 1) * (b + 1) * (t_a / t_b) ** -a / ((a + b + 1) * t_a)


def paper_coefficients(times, sigma_rels, t_out, sigma_out) -> np.ndarray:
    n = len(times)
    gram = np.array([[paper_correlation(times[i], sigma_rels[i], times[j], sigma_rels[j])
                      for j in range(n)] for i in range(n)])
    rhs = np.array([paper_correlation(times[i], sigma_rels[i], t_out, sigma_out)
                    for i in range(n)])
    x = np.linalg.solve(gram, rhs)
    return x / x.sum()


@pytest.mark.parametrize("n", [20, 50])
@pytest.mark.parametrize("sigma_out", [0.03, 0.07, 0.15, 0.25])
def test_coefficients_agree_with_the_papers_formulas_to_1e9(n, sigma_out) -> None:
    times, widths = snapshot_grid(n, every=8_388_608.0)  # EDM2's snapshot interval, in images
    reference = paper_coefficients(times, widths, times[-1], sigma_out)
    ours = solve_posthoc_coefficients(
        times, sigma_rels=widths, target_time=times[-1], target_sigma_rel=sigma_out, warn=False
    )
    assert np.max(np.abs(ours.coefficients - reference)) <= 1e-9
    assert ours.coefficients.sum() == pytest.approx(1.0, abs=1e-12)


def test_inner_product_closed_form_equals_quadrature() -> None:
    nodes, weights = np.polynomial.legendre.leggauss(200)
    for t_a, g_a, t_b, g_b in [(3.0, 16.97, 5.0, 6.94), (5.0, 6.94, 3.0, 16.97),
                               (4.0, 2.5, 4.0, 40.0), (1e9, 6.94, 2e9, 6.94)]:
        m = min(t_a, t_b)
        tau = (nodes + 1) * m / 2
        p_a = (g_a + 1) * tau**g_a / t_a ** (g_a + 1)
        p_b = (g_b + 1) * tau**g_b / t_b ** (g_b + 1)
        quadrature = float(np.sum(weights * p_a * p_b) * m / 2)
        assert float(profile_inner_product(t_a, g_a, t_b, g_b)) == pytest.approx(
            quadrature, rel=1e-12
        )


def test_only_snapshots_up_to_the_target_time_are_used() -> None:
    times, widths = snapshot_grid(30)
    t_out = times[2 * 19]  # the 20th snapshot time; 10 later snapshot times exist
    solution = solve_posthoc_coefficients(
        np.concatenate([[0.0], times]), sigma_rels=np.concatenate([[0.05], widths]),
        target_time=t_out, target_sigma_rel=0.07,
    )
    assert not solution.used[0] and solution.coefficients[0] == 0.0  # t = 0 holds nothing
    later = np.concatenate([[0.0], times]) > t_out
    assert np.all(solution.coefficients[later] == 0.0) and not solution.used[later].any()
    assert solution.coefficients.sum() == pytest.approx(1.0, abs=1e-12)
    assert solution.used.sum() == 40


def test_a_snapshotted_profile_is_its_own_reconstruction() -> None:
    times, widths = snapshot_grid(20)
    solution = solve_posthoc_coefficients(
        times, sigma_rels=widths, target_time=times[-1], target_sigma_rel=0.10
    )
    expected = np.zeros(40)
    expected[-1] = 1.0
    np.testing.assert_allclose(solution.coefficients, expected, atol=1e-9)
    assert solution.residual < 1e-6 and solution.sum_abs == pytest.approx(1.0, abs=1e-9)
    assert solution.ill_posed == ()


def test_solution_reports_condition_number_sum_abs_and_residual() -> None:
    times, widths = snapshot_grid(20)
    solution = solve_posthoc_coefficients(
        times, sigma_rels=widths, target_time=times[-1], target_sigma_rel=0.07
    )
    assert 1e2 < solution.condition_number < 1e5
    assert solution.sum_abs == pytest.approx(np.abs(solution.coefficients).sum())
    assert 1.0 < solution.sum_abs < 2.0
    assert 1e-4 < solution.residual < 1e-2  # 2.5e-3 with 20 snapshots of 0.05 and 0.10
    assert solution.target_gamma == pytest.approx(sigma_rel_to_gamma(0.07))
    assert solution.to_dict()["target_sigma_rel"] == pytest.approx(0.07)


def test_times_in_samples_give_the_same_coefficients_as_in_steps() -> None:
    steps, widths = snapshot_grid(20)
    a = solve_posthoc_coefficients(steps, sigma_rels=widths, target_time=steps[-1],
                                   target_sigma_rel=0.12)
    samples = steps * 4096
    b = solve_posthoc_coefficients(samples, sigma_rels=widths, target_time=samples[-1],
                                   target_sigma_rel=0.12)
    np.testing.assert_allclose(a.coefficients, b.coefficients, rtol=0, atol=1e-12)


def test_narrower_than_every_snapshot_warns() -> None:
    times, widths = snapshot_grid(20)
    with pytest.warns(IllPosedReconstructionWarning, match=r"sigma_rel 0\.03 is narrower than "
                      r"every snapshot's \(smallest 0\.05\).*sum \|coef\| = 8\.\d"):
        solution = solve_posthoc_coefficients(
            times, sigma_rels=widths, target_time=times[-1], target_sigma_rel=0.03
        )
    assert len(solution.ill_posed) == 1


def test_too_few_snapshots_for_a_wide_profile_warns() -> None:
    times, widths = snapshot_grid(5)
    with pytest.warns(IllPosedReconstructionWarning, match=r"relative L2 error of 0\.4\d"):
        solve_posthoc_coefficients(
            times, sigma_rels=widths, target_time=times[-1], target_sigma_rel=0.28
        )


def test_warn_false_keeps_the_reasons_without_warning() -> None:
    times, widths = snapshot_grid(20)
    solution = solve_posthoc_coefficients(
        times, sigma_rels=widths, target_time=times[-1], target_sigma_rel=0.02, warn=False
    )
    assert any("narrower" in r for r in solution.ill_posed)
    assert any("relative L2 error" in r for r in solution.ill_posed)


@pytest.mark.parametrize("bad", [0.0, -0.1, 0.2887, 0.3, float("nan")])
def test_target_sigma_rel_out_of_range_names_the_value(bad) -> None:
    times, widths = snapshot_grid(3)
    with pytest.raises(InvalidDecayError, match=rf"Invalid (target_)?sigma_rel {bad!r}"):
        solve_posthoc_coefficients(
            times, sigma_rels=widths, target_time=times[-1], target_sigma_rel=bad
        )


def test_target_time_without_a_snapshot_names_the_time_and_the_choices() -> None:
    times, widths = snapshot_grid(3)
    with pytest.raises(InvalidDecayError, match=r"^No snapshot at target time 2500: snapshots "
                       r"exist at times \[1000\.0, 2000\.0, 3000\.0\]; reconstruct at one"):
        solve_posthoc_coefficients(
            times, sigma_rels=widths, target_time=2500, target_sigma_rel=0.07
        )


def test_other_bad_inputs_get_errors_naming_them() -> None:
    times, widths = snapshot_grid(3)
    with pytest.raises(InvalidDecayError, match=r"^Got 5 snapshot sigma_rels for 6 snapshot"):
        solve_posthoc_coefficients(times, sigma_rels=widths[:5], target_time=3000,
                                   target_sigma_rel=0.07)
    with pytest.raises(InvalidDecayError, match=r"exactly one of sigma_rels= or gammas="):
        solve_posthoc_coefficients(times, target_time=3000, target_sigma_rel=0.07)
    with pytest.raises(InvalidDecayError, match=r"target_sigma_rel=None, target_gamma=None"):
        solve_posthoc_coefficients(times, sigma_rels=widths, target_time=3000)
    with pytest.raises(InvalidDecayError, match=r"^Invalid power gamma -1\.0"):
        solve_posthoc_coefficients(times, sigma_rels=widths, target_time=3000, target_gamma=-1.0)
    with pytest.raises(InvalidDecayError, match=r"same time and gamma"):
        solve_posthoc_coefficients(np.concatenate([times, [3000.0]]),
                                   sigma_rels=np.concatenate([widths, [0.1]]),
                                   target_time=3000, target_sigma_rel=0.07)
    with pytest.raises(InvalidDecayError, match=r"^Invalid target_time 'soon'"):
        solve_posthoc_coefficients(times, sigma_rels=widths, target_time="soon",
                                   target_sigma_rel=0.07)


def test_target_gamma_equals_target_sigma_rel() -> None:
    times, widths = snapshot_grid(10)
    a = solve_posthoc_coefficients(times, sigma_rels=widths, target_time=times[-1],
                                   target_sigma_rel=0.08)
    b = solve_posthoc_coefficients(times, gammas=[sigma_rel_to_gamma(s) for s in widths],
                                   target_time=times[-1], target_gamma=sigma_rel_to_gamma(0.08))
    np.testing.assert_allclose(a.coefficients, b.coefficients, rtol=0, atol=1e-12)


def test_sigma_rel_grid_spans_the_well_posed_range() -> None:
    times, widths = snapshot_grid(20)
    grid = posthoc_sigma_rel_grid(times, sigma_rels=widths, target_time=times[-1])
    assert grid[0] == 0.05 and len(grid) == 10
    assert grid == sorted(grid) and all(f"{x:.3g}" == repr(x) for x in grid)
    top = solve_posthoc_coefficients(times, sigma_rels=widths, target_time=times[-1],
                                     target_sigma_rel=grid[-1], warn=False)
    assert top.ill_posed == () and 0.2 < grid[-1] < 0.26
    sparse = posthoc_sigma_rel_grid(times[:6], sigma_rels=widths[:6], target_time=times[5])
    assert sparse[-1] < grid[-1]  # three snapshot times: a narrower well-posed range


def test_constant_decay_equivalent_matches_the_width_of_the_power_profile() -> None:
    beta = sigma_rel_to_decay(0.10, 10_000)
    assert beta == pytest.approx(0.99900, abs=5e-6)
    # the std of the age of a constant-β EMA, summed numerically
    ages = np.arange(200_000)
    w = (1 - beta) * beta**ages
    std = math.sqrt(np.sum(w * ages**2) - np.sum(w * ages) ** 2)
    assert std == pytest.approx(0.10 * 10_000, rel=1e-9)
    assert decay_to_sigma_rel(beta, 10_000) == pytest.approx(0.10, rel=1e-12)
    assert sigma_rel_to_decay(0.10, 10_000, update_every=10) == pytest.approx(
        sigma_rel_to_decay(0.10, 1_000), rel=1e-15
    )


def test_half_life_and_the_ema_scaling_rule() -> None:
    assert decay_half_life(0.5) == pytest.approx(1.0)
    assert decay_half_life(0.999) == pytest.approx(692.8, abs=0.1)
    # Busbridge et al. 2023: β^κ for a κ-times larger batch keeps the half-life in samples
    kappa, batch = 4, 256
    assert decay_half_life(0.999**kappa) * batch * kappa == pytest.approx(
        decay_half_life(0.999) * batch, rel=1e-12
    )
    with pytest.raises(InvalidDecayError, match=r"^Invalid decay 1\.0"):
        decay_half_life(1.0)


def test_the_solver_imports_without_torch() -> None:
    code = (
        "import sys, ema_core.posthoc, ema_core.posthoc_files\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Averaging health rules (frontend/js/health.js), each on the statistics that trigger it and
on the nearest ones that must not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.frontend.node import call


def warnings(series: dict[str, Any], last_step: int) -> list[dict[str, str]]:
    return list(call("health.js", "m.healthWarnings(arg.series, arg.last)",
                     {"series": series, "last": last_step}))


def stats(key: str, steps: list[int], values: list[Any]) -> dict[str, Any]:
    return {key: {"steps": steps, "values": values}}


STEPS = [0, 50, 100, 150]
MOVING_NORM = stats("weights/norm/live", STEPS, [40.0, 40.5, 41.0, 41.5])


def test_initial_share_is_the_product_of_the_decays() -> None:
    got = call("health.js", """[m.initialShare({steps: [0, 50, 100], values: [0.99, 0.99, 0.99]}),
        m.initialShare({steps: [0, 100], values: [0.5, 'NaN']})]""")
    assert got[0] == pytest.approx(0.99**101)
    assert got[1] == pytest.approx(0.5)


def test_drift_stuck_at_zero_while_live_moves() -> None:
    series = {**MOVING_NORM, **stats("weights/drift/ema_0.999", STEPS, [0.2, 0, 0, 0])}
    (warning,) = warnings(series, 150)
    assert (warning["id"], warning["averager"]) == ("drift-stuck", "ema_0.999")
    assert "since step 50" in warning["title"]
    assert "moved from 40.5 to 41.5" in warning["cause"]
    assert "re-bound" in warning["cause"] and "Build the averager after" in warning["remedy"]


@pytest.mark.parametrize("case", ["two zeros", "tiny drift", "live still", "no norm",
                                  "copying before update_after_step"])
def test_drift_not_stuck(case: str) -> None:
    drift = {"two zeros": [0.2, 0.1, 0, 0], "tiny drift": [0, 0, 1e-12, 0]}.get(case, [0] * 4)
    series = stats("weights/drift/swa", STEPS, drift)
    if case == "copying before update_after_step":  # decay 0: the shadow copies on purpose
        series.update(stats("decay/swa", STEPS, [0.0] * 4))
    if case != "no norm":
        norm = [40.0] * 4 if case == "live still" else MOVING_NORM["weights/norm/live"]["values"]
        series.update(stats("weights/norm/live", STEPS, norm))
    assert warnings(series, 150) == []


def test_half_life_longer_than_the_run() -> None:
    series = stats("decay/ema_0.9999", STEPS, [0.9999] * 4)
    (warning,) = warnings(series, 150)
    assert warning["id"] == "half-life" and warning["averager"] == "ema_0.9999"
    assert "half-life of 6,931 steps, longer than the 151 steps run so far" in warning["cause"]
    assert "about 99 %" in warning["cause"]  # 0.9999^151 = 0.985
    assert "use_warmup=True" in warning["remedy"]
    assert warnings(series, 7000) == []  # past the half-life
    warm = stats("decay/ema_0.9999", STEPS, [0.0, 0.98, 0.99, 0.993])  # a warm-up schedule
    assert warnings(warm, 150) == []
    swa = stats("decay/swa", STEPS, [0.0, 0.98, 0.99, 0.9999])  # SWA's 1 − 1/(n+1)
    assert warnings(swa, 150) == []


def test_swa_evaluated_before_batchnorm_recompute() -> None:
    series = {**stats("bn_recomputed/swa", [100, 200], [1, 0]),
              **stats("eval/swa/accuracy", [100, 200], [0.9, 0.4])}
    (warning,) = warnings(series, 200)
    assert (warning["id"], warning["averager"]) == ("bn-stale", "swa")
    assert "step 200" in warning["title"]
    assert "swa.update_bn(train_loader, model)" in warning["remedy"]
    series["bn_recomputed/swa"] = {"steps": [100, 200, 300], "values": [1, 0, 1]}
    series["eval/swa/accuracy"] = {"steps": [100, 200, 300], "values": [0.9, 0.4, 0.9]}
    assert warnings(series, 300) == []  # recomputed before the latest evaluation
    no_eval = stats("bn_recomputed/swa", [100], [0])
    assert warnings(no_eval, 100) == []

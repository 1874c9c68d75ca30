"""The "What-if decay" panel in a real Chromium, fed by a real training loop (PostHocEMA,
Monitor, evaluate_posthoc): the curve, the tracked averagers and live marked, the best σ_rel
over training, live updates, the storage line, the effective lengths, "Export this EMA"."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch
from playwright.sync_api import Page, expect

from ema_core.client import Monitor
from ema_core.ema import EMA
from ema_core.posthoc_ema import PostHocEMA
from ema_core.snapshot import load_snapshot
from ema_core.swap import evaluate_all
from ema_core.whatif import evaluate_posthoc
from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import post_points
from tests.ema_core.client_utils import eval_fn, find_run, tiny_model, train_step

pytestmark = pytest.mark.e2e

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


def train(server: LocalServer, folder: Path, name: str, steps: int = 120
          ) -> tuple[int, PostHocEMA, dict[float, dict[str, float]]]:
    """A real run: PostHocEMA + EMA(0.9), eval and the what-if sweep every 40 steps."""
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    posthoc = PostHocEMA(model, folder / "phema", snapshot_every=10)
    ema = EMA(model, 0.9)
    mon = Monitor("whatif", name, server.url, run_dir=folder / "run", **FAST)
    mon.watch(posthoc, ema, stats_every=10, batch_size=64)
    results: dict[float, dict[str, float]] = {}
    for step in range(1, steps + 1):
        loss = train_step(model, opt)
        posthoc.update(model)
        ema.update(model)
        mon.step(step, {"loss": loss})
        if step % 40 == 0:
            mon.log_eval(step, evaluate_all(model, [posthoc, ema], eval_fn))
            results = evaluate_posthoc(model, posthoc, eval_fn)
            mon.log_posthoc(step, results)
    mon.finish()
    return int(find_run(server.url, "whatif", name)["id"]), posthoc, results


def test_whatif_panel_shows_the_sweep_and_exports_the_chosen_ema(
    server: LocalServer, page: Page, tmp_path: Path
) -> None:
    run_id, posthoc, results = train(server, tmp_path, "panel")
    page.goto(f"{server.url}/run.html?id={run_id}#sec-whatif")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    chart = page.locator("#chart-whatif")
    expect(chart).to_have_attribute("data-points", str(len(results)))
    expect(page.locator("#whatif-metric")).to_have_value("accuracy")
    expect(page.locator("#whatif-step option")).to_have_count(3)
    expect(page.locator("#whatif-step")).to_have_value("120")
    names = page.evaluate("document.getElementById('chart-whatif').data.map(t => t.name)")
    assert "ema_sigma_rel_0.05" in names and "ema_sigma_rel_0.1" in names  # tracked, marked
    live_line = page.evaluate("document.getElementById('chart-whatif').layout.shapes[0].y0")
    assert live_line == pytest.approx(  # the live model's accuracy at step 120
        httpx.get(f"{server.url}/api/runs/{run_id}/metrics",
                  params={"keys": "eval/live/accuracy"}).json()["series"][
            "eval/live/accuracy"]["values"][-1])
    top = page.evaluate("document.getElementById('chart-whatif')._fullLayout.xaxis2.ticktext")
    assert all(text.startswith("0.") for text in top)  # β of each σ_rel at step 120
    best = page.evaluate("document.getElementById('chart-whatif-best').data[0].x")
    assert best == [40, 80, 120]
    expect(page.locator("#whatif-storage")).to_contain_text("post-hoc snapshots (σ_rel 0.05, 0.1)"
                                                           " at 12 steps")
    expect(page.locator("#whatif-note")).to_contain_text("profile error")
    lengths = page.locator("#lengths-table tbody tr")
    expect(lengths).to_have_count(3)
    # β 0.9: half-life ln 2 / −ln 0.9 = 6.58 steps, × batch 64 = 421 samples
    expect(page.locator("#lengths-table tr[data-averager='ema_0.9'] td.c2")).to_have_text("6.58")
    expect(page.locator("#lengths-table tr[data-averager='ema_0.9'] td.c3")).to_have_text("421")

    page.locator("#sec-whatif").screenshot(path=tmp_path / "panel.png")
    sigma = sorted(results)[3]
    point = page.evaluate(
        "s => document.getElementById('chart-whatif').data[0].x.indexOf(s)", sigma)
    chart.evaluate(  # a click on the 4th point of the curve, as Plotly reports it
        "(div, i) => div.emit('plotly_click', {points: [{curveNumber: 0, x: div.data[0].x[i],"
        " y: div.data[0].y[i]}]})", point)
    expect(chart).to_have_attribute("data-selected", str(sigma))
    with page.expect_download() as download_info:
        page.click("#whatif-export")
    download = download_info.value
    assert download.suggested_filename == (
        f"whatif-panel-posthoc_sigma_rel_{sigma:g}-step120.safetensors")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    model = tiny_model(5)
    metadata = load_snapshot(model, saved)
    assert float(metadata["sigma_rel"]) == pytest.approx(sigma)
    for key, value in posthoc.reconstruct(sigma, step=120).items():
        assert torch.equal(model.state_dict()[key], value), key

    # a later sweep arrives live: the panel moves on to it, keeping the σ_rel picked
    later = [{"key": f"posthoc/{s:g}/accuracy", "step": 160, "value": 0.5 + s}
             for s in sorted(results)]
    post_points(server, run_id, later)
    expect(page.locator("#whatif-step")).to_have_value("160")
    expect(chart).to_have_attribute("data-selected", str(sigma))
    page.select_option("#whatif-step", "160")  # a step chosen by hand: the best is shown
    expect(chart).to_have_attribute("data-selected", str(sorted(results)[-1]))

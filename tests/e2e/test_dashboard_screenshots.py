"""Every view of the run page filled with data from one run, saved as screenshots in
``tests/e2e/artifacts/`` (light and dark system theme) along with the runs page."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import (
    AVERAGERS,
    create_run,
    eval_points,
    post_points,
    safetensors_file,
    training_points,
    upload_snapshot,
)

pytestmark = pytest.mark.e2e

LAYERS = tuple(f"layer{block}.{i}.conv{j}" for block in (1, 2, 3) for i in (0, 1) for j in (1, 2)
               ) + ("conv1", "fc")
PANEL_COLORS = {"light": "#ffffff", "dark": "#1a1f28"}  # --panel in frontend/css/style.css
LINE_CHARTS = ("chart-norms", "chart-drift", "chart-rel-drift", "chart-decay", "chart-cos",
               "chart-train-loss", "chart-train-lr", "chart-eval-accuracy")


def accuracy(model: str, step: int) -> float:
    lag = {"live": 0.0, "ema_0.999": 0.012, "ema_0.9999": 0.006, "swa": 0.018}[model]
    return round(0.92 * (1 - math.exp(-step / 1200)) + lag * step / 5000, 4)


@pytest.fixture(scope="module")
def filled_run(server: LocalServer) -> int:
    """One run with every kind of data: stats steps, eval, snapshots of each averager."""
    run = create_run(server, project="cifar10", name="resnet18-ema")
    points = training_points(range(0, 5000, 25), layers=LAYERS)
    for step in range(500, 5001, 500):
        points += eval_points(step, {m: accuracy(m, step) for m in ("live", *AVERAGERS)})
    post_points(server, run["id"], points)
    for seed, (averager, step) in enumerate([(a, s) for a in AVERAGERS for s in (2500, 5000)]):
        upload_snapshot(server, run["id"], safetensors_file(seed), averager=averager, step=step,
                        metric="accuracy", value=accuracy(averager, step))
    return int(run["id"])


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_screenshots_show_every_view_filled(
    server: LocalServer, filled_run: int, browser: Browser, artifacts_dir: Path, scheme: str
) -> None:
    run_id = filled_run
    context = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{server.url}/run.html?id={run_id}")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    for chart_id in LINE_CHARTS:
        count = page.evaluate("id => document.getElementById(id).data.length", chart_id)
        assert count >= 1, f"{chart_id} has no trace"
    rows = page.evaluate("document.getElementById('chart-heatmap').data[0].z.length")
    assert rows == len(LAYERS)
    expect(page.locator("table.eval-table tbody tr")).to_have_count(4)
    expect(page.locator("#snapshots-table tbody tr")).to_have_count(6)
    expect(page.locator("#export-best")).to_be_enabled()
    page.get_by_text("cosine similarity").click()
    expect(page.locator("#chart-cos")).to_be_visible()
    page.wait_for_timeout(300)  # let Plotly finish its transitions before the picture
    page.screenshot(path=artifacts_dir / f"run_page_{scheme}.png", full_page=True)
    panel = PANEL_COLORS[scheme]
    assert page.evaluate("document.getElementById('chart-norms')._fullLayout.paper_bgcolor") == (
        panel)
    other = "dark" if scheme == "light" else "light"
    page.emulate_media(color_scheme=other)  # the system theme switches: charts follow live
    page.wait_for_function(
        "color => document.getElementById('chart-heatmap')._fullLayout.paper_bgcolor === color"
        " && document.getElementById('chart-norms')._fullLayout.paper_bgcolor === color",
        arg=PANEL_COLORS[other])

    page.goto(f"{server.url}/?project=cifar10")
    expect(page.locator("#runs-table tbody tr").first).to_contain_text("resnet18-ema")
    page.screenshot(path=artifacts_dir / f"runs_page_{scheme}.png", full_page=True)
    context.close()

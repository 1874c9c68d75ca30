"""A long run stays responsive: 200,000 points per series and 150 layers.

The page must receive at most 2,000 points per trace (server-side downsampling), drawn as SVG
(a trace the page keeps never passes 4,000 points, below which SVG draws faster than WebGL
sets up), and still append live points. The page's timing marks (ms from navigation start)
are written to ``tests/e2e/artifacts/scale.json``, not asserted: bench/first_paint.py
measures first paint (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import create_run, post_points

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = 200_000
LONG_KEYS = ("train/loss", "weights/rel_drift/ema_0.999")
N_LAYERS = 150
LAYER_EVERY = 2_000  # layer statistics every 2,000 steps: 100 points per layer


def long_run_points() -> list[dict[str, object]]:
    points: list[dict[str, object]] = [
        {"key": key, "step": step, "value": 1.0 / (1 + step * (k + 1) / 1000) + (step % 7) / 1e4}
        for k, key in enumerate(LONG_KEYS) for step in range(STEPS)
    ]
    points += [
        {"key": f"layer/blocks.{i}.mlp/rel_drift/ema_0.999", "step": step,
         "value": (1 + i / N_LAYERS) / (1 + step / 20_000)}
        for i in range(N_LAYERS) for step in range(0, STEPS, LAYER_EVERY)
    ]
    return points


def test_long_run_first_paint(server: LocalServer, page: Page, artifacts_dir: Path) -> None:
    run = create_run(server, project="scale")
    started = time.monotonic()
    post_points(server, run["id"], long_run_points())
    ingest_s = time.monotonic() - started

    page.goto(f"{server.url}/run.html?id={run['id']}")
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60_000)
    traces = page.evaluate("""() => ['chart-train-loss', 'chart-rel-drift'].map(id =>
        document.getElementById(id).data.map(t => ({type: t.type, n: t.x.length,
                                                  last: t.x[t.x.length - 1]}))[0])""")
    for trace in traces:
        assert trace["type"] == "scatter"
        assert 1_000 <= trace["n"] <= 2_000
        assert trace["last"] == STEPS - 1
    heatmap = page.evaluate("(() => { const t = document.getElementById('chart-heatmap').data[0];"
                            " return [t.z.length, t.z[0].length]; })()")
    assert heatmap == [N_LAYERS, STEPS // LAYER_EVERY]
    timings = page.evaluate("""() => Object.fromEntries(
        ['first-chart', 'line-charts', 'all-views'].map(name =>
            [name, Math.round(performance.getEntriesByName('emaboard:' + name)[0].startTime)]))""")
    (artifacts_dir / "scale.json").write_text(json.dumps(
        {"points_ingested": len(LONG_KEYS) * STEPS + N_LAYERS * STEPS // LAYER_EVERY,
         "ingest_s": round(ingest_s, 2), **timings}, indent=2))
    page.screenshot(path=artifacts_dir / "run_page_scale.png", full_page=True)

    post_points(server, run["id"], [{"key": "train/loss", "step": STEPS + i, "value": 0.01}
                                    for i in range(5)])
    expect(page.locator("#last-step")).to_have_text(str(STEPS + 4))
    page.wait_for_function(
        f"document.getElementById('chart-train-loss').data[0].x.at(-1) === {STEPS + 4}")

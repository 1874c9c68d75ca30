"""The chart defects of issue 15, item 7, each reproduced with the data that showed it: a
layer heatmap of an ``nn.Sequential`` (layers "0", "2"), a constant learning rate, a series of
one point, and live next to ``ema_0.9``."""

from __future__ import annotations

import math
from urllib.parse import unquote

import pytest
from playwright.sync_api import Page

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import create_run, post_points
from tests.e2e.pages import chart_data, open_run_page, wait_trace_lengths
from tests.frontend.test_chart_modules import srgb_to_lab

pytestmark = pytest.mark.e2e

LAYOUT = """id => { const l = document.getElementById(id)._fullLayout;
    return {x: l.xaxis.range, y: l.yaxis.range, yType: l.yaxis.type,
            yCategories: l.yaxis._categories || null}; }"""


def test_sequential_layer_names_are_categories(server: LocalServer, page: Page) -> None:
    # Before: y = 0 and 2 on a numeric −1…3 axis.
    run = create_run(server)
    post_points(server, run["id"], [
        {"key": f"layer/{layer}/rel_drift/ema_0.9", "step": step, "value": 0.1 * (i + 1)}
        for i, layer in enumerate(["0", "2", "10"]) for step in range(0, 100, 10)])
    open_run_page(page, server, run["id"])
    layout = page.evaluate(LAYOUT, "chart-heatmap")
    assert layout["yType"] == "category"
    assert layout["yCategories"] == ["0", "2", "10"]
    assert layout["y"] == pytest.approx([2.5, -0.5])  # three rows, first on top


def test_a_constant_series_is_drawn_at_its_value(server: LocalServer, page: Page) -> None:
    # Before: lr 0.001 drawn on a −0.999…1.001 axis, a flat line seemingly at 0.
    run = create_run(server)
    post_points(server, run["id"], [{"key": "train/lr", "step": step, "value": 0.001}
                                    for step in range(0, 100, 10)])
    open_run_page(page, server, run["id"])
    low, high = page.evaluate(LAYOUT, "chart-train-lr")["y"]
    assert 0.0008 <= low < 0.001 < high <= 0.0012
    ticks = page.locator("#chart-train-lr .ytick text").all_text_contents()
    assert "0.001" in ticks and "0" not in ticks
    # Once the value moves (a schedule starts), the axis follows the data again.
    post_points(server, run["id"], [{"key": "train/lr", "step": 100, "value": 0.01}])
    page.wait_for_function(
        "document.getElementById('chart-train-lr')._fullLayout.yaxis.range[1] > 0.01")


def test_a_one_point_series_is_visible_with_whole_labels(server: LocalServer,
                                                         page: Page) -> None:
    # Before: a line of one point draws nothing; the x axis ran 1199…1201 in half steps.
    run = create_run(server)
    post_points(server, run["id"], [{"key": "val/acc", "step": 1200, "value": 123456.789}])
    open_run_page(page, server, run["id"])
    (trace,) = chart_data(page, "chart-val-acc")
    assert "markers" in trace["mode"]
    layout = page.evaluate(LAYOUT, "chart-val-acc")
    assert layout["x"][0] < 1200 < layout["x"][1] and layout["x"][1] - layout["x"][0] >= 10
    low, high = layout["y"]
    assert low < 123456.789 < high
    ticks = page.locator("#chart-val-acc .xtick text").all_text_contents()
    assert ticks and all("." not in tick for tick in ticks), ticks  # whole steps only
    point = page.locator("#chart-val-acc .point").bounding_box()
    assert point is not None and point["width"] > 0
    inside = page.evaluate("""id => { const div = document.getElementById(id);
        const box = div.getBoundingClientRect();
        return [...div.querySelectorAll('.ytick text, .xtick text')].every(t => {
          const r = t.getBoundingClientRect();
          return r.left >= box.left && r.right <= box.right && r.bottom <= box.bottom; }); }""",
                           "chart-val-acc")
    assert inside, "a tick label is cut off at the chart's edge"
    # The second point turns the marker into a line.
    post_points(server, run["id"], [{"key": "val/acc", "step": 1300, "value": 123000.0}])
    wait_trace_lengths(page, "chart-val-acc", 2)
    page.wait_for_function("document.getElementById('chart-val-acc').data[0].mode === 'lines'")


def test_live_is_distinct_from_every_shadow(server: LocalServer, page: Page) -> None:
    # Before: live #e4572e next to ema_0.9 #c0392b (ΔE 16).
    run = create_run(server)
    averagers = ("ema_0.9", "ema_0.99", "ema_0.999", "ema_0.9999", "swa", "ema_0.95")
    post_points(server, run["id"], [
        {"key": f"weights/norm/{name}", "step": step, "value": 10 + i + step / 100}
        for i, name in enumerate(("live", *averagers)) for step in range(0, 100, 10)])
    open_run_page(page, server, run["id"])
    traces = {t["name"]: t["line"] for t in chart_data(page, "chart-norms")}
    live = traces.pop("live")
    assert set(traces) == set(averagers)
    for name, line in traces.items():
        distance = math.dist(srgb_to_lab(live["color"]), srgb_to_lab(line["color"]))
        assert distance >= 40, f"{name} {line['color']} is ΔE {distance:.0f} from live"
        assert live["width"] > line["width"]


def test_layer_requests_wait_for_the_line_series(server: LocalServer, page: Page) -> None:
    # First paint (issue 15, item 9): the heatmap's layer requests, the server's costliest
    # after the long series, must not share its cores with the first chart's requests.
    run = create_run(server)
    post_points(server, run["id"], [
        {"key": key, "step": step, "value": 1.0 / (step + 1)}
        for key in ("train/loss", "weights/rel_drift/ema_0.9") for step in range(50)])
    post_points(server, run["id"], [
        {"key": f"layer/{layer}/rel_drift/ema_0.9", "step": step, "value": 0.1}
        for layer in ("0", "2") for step in range(0, 50, 10)])
    events: list[tuple[str, str]] = []
    page.on("request", lambda request: events.append(("sent", request.url)))
    page.on("requestfinished", lambda request: events.append(("finished", request.url)))
    open_run_page(page, server, run["id"])
    metrics = [(event, unquote(url)) for event, url in events if "/metrics?" in url]
    layer_sent = [i for i, (event, url) in enumerate(metrics)
                  if event == "sent" and "keys=layer/" in url]
    line_finished = [i for i, (event, url) in enumerate(metrics) if event == "finished"
                     and ("keys=train/loss" in url or "keys=weights/rel_drift" in url)]
    assert layer_sent and len(line_finished) == 2, metrics
    assert min(layer_sent) > max(line_finished), metrics

"""Every logged scalar is drawn (issue 15, items 1 and 6): panels by key prefix, collapsible,
a regex filter over key names, TensorBoard smoothing with the raw series faint, and the x
axis by step, wall time or relative time — all live over the websocket."""

from __future__ import annotations

import math

import pytest
from playwright.sync_api import Page, expect

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import create_run, post_points
from tests.e2e.pages import chart_data, open_run_page, wait_trace_lengths
from tests.frontend.test_chart_modules import tensorboard_smooth

pytestmark = pytest.mark.e2e

# Keys from docs/client.md's examples (lr, val/acc) and the HF callback (hf/*), plus train/*.
KEYS = ("lr", "val/acc", "hf/eval_loss", "hf/train_runtime", "train/loss", "train/lr",
        "custom/deep/key")


def scalar_points(steps: range, keys: tuple[str, ...] = KEYS) -> list[dict[str, object]]:
    return [{"key": key, "step": step, "value": (k + 1) / (1 + step / 100) + (step % 3) / 50}
            for k, key in enumerate(keys) for step in steps]


def panel(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f"details.scalar-panel[data-panel='{name}']")


def chart(page: Page, key: str):  # type: ignore[no-untyped-def]
    return page.locator(f".chart[data-key='{key}']")


def test_every_logged_scalar_is_drawn_in_panels_by_prefix(server: LocalServer,
                                                          page: Page) -> None:
    run = create_run(server)
    post_points(server, run["id"], scalar_points(range(0, 100, 10)))
    open_run_page(page, server, run["id"])
    names = page.locator("details.scalar-panel").evaluate_all(
        "panels => panels.map(p => [p.dataset.panel, [...p.querySelectorAll('.chart')]"
        ".map(c => c.dataset.key)])")
    assert names == [["custom/deep", ["custom/deep/key"]],
                     ["hf", ["hf/eval_loss", "hf/train_runtime"]],
                     ["scalars", ["lr"]], ["train", ["train/loss", "train/lr"]],
                     ["val", ["val/acc"]]]
    for key in KEYS:
        data = chart_data(page, chart(page, key).get_attribute("id") or "")
        assert [len(trace["x"]) for trace in data] == [10], key
    expect(panel(page, "hf").locator("summary")).to_contain_text("hf 2")

    # Live: points of known keys extend their charts; a new key gets its chart, a new prefix
    # its panel (in sorted order), without a reload.
    post_points(server, run["id"], scalar_points(range(100, 150, 10))
                + scalar_points(range(0, 30, 10), ("val/f1", "test/acc")))
    wait_trace_lengths(page, "chart-val-acc", 15)
    wait_trace_lengths(page, "chart-lr", 15)
    wait_trace_lengths(page, "chart-val-f1", 3)
    expect(panel(page, "test")).to_be_visible()
    order = page.locator("details.scalar-panel").evaluate_all(
        "panels => panels.map(p => p.dataset.panel)")
    assert order == ["custom/deep", "hf", "scalars", "test", "train", "val"]
    expect(panel(page, "val").locator(".chart")).to_have_count(2)


def test_panels_collapse_and_the_filter_is_a_regex(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    post_points(server, run["id"], scalar_points(range(0, 50, 10)))
    open_run_page(page, server, run["id"])

    # A closed panel draws nothing while closed, and everything that came meanwhile on opening.
    summary = panel(page, "train").locator("summary")
    summary.focus()
    page.keyboard.press("Enter")
    expect(panel(page, "train")).not_to_have_attribute("open", "")
    expect(chart(page, "train/loss")).to_be_hidden()
    post_points(server, run["id"], scalar_points(range(50, 80, 10)))
    wait_trace_lengths(page, "chart-lr", 8)
    assert len(chart_data(page, "chart-train-loss")[0]["x"]) == 5  # not redrawn while closed
    page.keyboard.press("Enter")
    wait_trace_lengths(page, "chart-train-loss", 8)

    search = page.get_by_label("filter keys")
    search.fill("LOSS$")
    expect(chart(page, "train/loss")).to_be_visible()
    expect(chart(page, "hf/eval_loss")).to_be_visible()
    for key in ("lr", "val/acc", "train/lr", "hf/train_runtime"):
        expect(chart(page, key)).to_be_hidden()
    expect(panel(page, "val")).to_be_hidden()
    expect(panel(page, "hf").locator("summary")).to_contain_text("1 of 2")

    search.fill("train/(")
    expect(search).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#scalar-filter-note")).to_contain_text(
        'Invalid regular expression "train/("')
    expect(chart(page, "val/acc")).to_be_visible()  # a broken regex hides nothing
    search.fill("")
    expect(search).to_have_attribute("aria-invalid", "false")
    expect(page.locator("#scalar-filter-note")).to_have_text("")


def set_smoothing(page: Page, weight: float) -> None:
    page.evaluate("""w => { const s = document.getElementById('smoothing'); s.value = String(w);
        s.dispatchEvent(new Event('input', {bubbles: true})); }""", weight)


def test_smoothing_draws_the_raw_series_faint_and_stays_live(server: LocalServer,
                                                               page: Page) -> None:
    run = create_run(server)
    values = [math.sin(step) + step / 20 for step in range(60)]
    post_points(server, run["id"], [{"key": "train/loss", "step": step, "value": value}
                                    for step, value in enumerate(values[:40])])
    open_run_page(page, server, run["id"])
    set_smoothing(page, 0.9)
    expect(page.locator("#smoothing-value")).to_have_text("0.900")
    expect(chart(page, "train/loss")).to_have_attribute("data-smoothing", "0.9")
    raw, smooth = chart_data(page, "chart-train-loss")
    assert raw["opacity"] == 0.25 and raw["showlegend"] is False
    assert raw["y"] == pytest.approx(values[:40])
    assert smooth["opacity"] == 1 and smooth["line"]["color"] == raw["line"]["color"]
    assert smooth["y"] == pytest.approx(tensorboard_smooth(values[:40], 0.9), rel=1e-9)
    # The norms chart (a dedicated view) follows the same slider.
    expect(page.locator("#chart-norms")).to_have_attribute("data-smoothing", "0.9")

    # Live points extend both traces; the smoothed one continues the same average.
    post_points(server, run["id"], [{"key": "train/loss", "step": step, "value": values[step]}
                                    for step in range(40, 60)])
    wait_trace_lengths(page, "chart-train-loss", 60)
    raw, smooth = chart_data(page, "chart-train-loss")
    assert smooth["y"] == pytest.approx(tensorboard_smooth(values, 0.9), rel=1e-9)

    page.reload()  # the setting is kept for the next page
    page.wait_for_function("document.body.dataset.state === 'ready'")
    expect(page.locator("#smoothing")).to_have_value("0.9")
    assert len(chart_data(page, "chart-train-loss")) == 2
    set_smoothing(page, 0)
    expect(chart(page, "train/loss")).to_have_attribute("data-smoothing", "0")
    assert len(chart_data(page, "chart-train-loss")) == 1


def test_x_axis_by_step_wall_time_and_relative_time(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    start = run["created_at"]
    points = [{"key": "val/acc", "step": step, "value": step / 100,
               "wall_time": start + 30 + 3 * step} for step in range(0, 20)]
    post_points(server, run["id"], points)
    open_run_page(page, server, run["id"])
    assert chart_data(page, "chart-val-acc")[0]["x"] == list(range(20))

    page.get_by_label("x axis").select_option("relative")
    expect(chart(page, "val/acc")).to_have_attribute("data-x-mode", "relative")
    x = chart_data(page, "chart-val-acc")[0]["x"]
    span = page.evaluate("document.getElementById('chart-val-acc')._fullLayout.xaxis.title.text")
    # The run's span decides the unit (seconds here: the run is younger than 2 minutes).
    assert span == "time since the run started (s)"
    assert x == pytest.approx([30 + 3 * step for step in range(20)], abs=1e-6)

    page.get_by_label("x axis").select_option("wall")
    expect(chart(page, "val/acc")).to_have_attribute("data-x-mode", "wall")
    assert page.evaluate(
        "document.getElementById('chart-val-acc')._fullLayout.xaxis.type") == "date"
    first = chart_data(page, "chart-val-acc")[0]["x"][0]
    local = page.evaluate("""t => { const d = new Date(t * 1000);
        return [d.getHours(), d.getMinutes(), d.getSeconds()]; }""", start + 30)
    assert first[11:19] == "{:02d}:{:02d}:{:02d}".format(*local)
    # Live points arrive with their wall time.
    post_points(server, run["id"], [{"key": "val/acc", "step": 20, "value": 0.2,
                                     "wall_time": start + 90}])
    wait_trace_lengths(page, "chart-val-acc", 21)
    last = chart_data(page, "chart-val-acc")[0]["x"][-1]
    local = page.evaluate("""t => { const d = new Date(t * 1000);
        return [d.getHours(), d.getMinutes(), d.getSeconds()]; }""", start + 90)
    assert last[11:19] == "{:02d}:{:02d}:{:02d}".format(*local)

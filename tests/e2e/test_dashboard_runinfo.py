"""Config, summary and tags (issue 15, items 2 and 3): the run page's searchable config and
summary tables and its tag editor, the runs page's filters and config/summary columns, and
the compare page overlaying any key — all live over the websockets."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import post_points
from tests.e2e.pages import chart_data, open_run_page

pytestmark = pytest.mark.e2e

# Shaped like a Hugging Face TrainingArguments dict: flat scalars, lists, a nested object.
CONFIG: dict[str, Any] = {
    "learning_rate": 5e-05, "per_device_train_batch_size": 32, "num_train_epochs": 3.0,
    "lr_scheduler_type": "linear", "max_grad_norm": "Infinity", "report_to": ["none"],
    "fp16": False, "adam": {"beta1": 0.9, "beta2": 0.999, "eps": {"value": 1e-08}},
    **{f"option_{i:03d}": i for i in range(100)},
}


def create_run(server: LocalServer, project: str, name: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/runs", json={"project": project, "name": name,
                                                         **body}, timeout=30)
    response.raise_for_status()
    return dict(response.json())


def patch(server: LocalServer, run_id: int, **body: Any) -> None:
    httpx.patch(f"{server.url}/api/runs/{run_id}", json=body, timeout=30).raise_for_status()


def test_config_and_summary_tables_are_flattened_and_searchable(server: LocalServer,
                                                                page: Page) -> None:
    run = create_run(server, "info", f"hf-{uuid.uuid4().hex[:6]}", config=CONFIG)
    patch(server, run["id"], summary={"primary_metric": "loss", "train": {"runtime_s": 12.5}})
    open_run_page(page, server, run["id"])
    config = page.locator("#config-table")
    expect(config.locator("tbody tr")).to_have_count(110)  # 107 leaves + the 3 of "adam"
    expect(config.locator("caption .count")).to_have_text("110")
    row = config.locator("tr[data-key='adam.eps.value']")
    expect(row.locator("td")).to_have_text("1e-8")
    expect(config.locator("tr[data-key='report_to'] td")).to_have_text('["none"]')
    expect(config.locator("tr[data-key='max_grad_norm'] td")).to_have_text("Infinity")
    summary = page.locator("#summary-table")
    expect(summary.locator("tr[data-key='train.runtime_s'] td")).to_have_text("12.5")

    search = page.get_by_label("search")
    search.fill("^adam\\.")  # a regex over keys
    expect(config.locator("tbody tr:visible")).to_have_count(3)
    expect(config.locator("caption .count")).to_have_text("3 of 110")
    search.fill("linear")  # and over values
    expect(config.locator("tbody tr:visible")).to_have_count(1)
    expect(config.locator("tbody tr:visible th")).to_have_text("lr_scheduler_type")
    search.fill("[")
    expect(page.locator("#config-search-note")).to_contain_text("Invalid regular expression")
    search.fill("")

    patch(server, run["id"], summary={"best_accuracy": 0.97})  # live: a "run" message
    expect(summary.locator("tr[data-key='best_accuracy'] td")).to_have_text("0.97")
    expect(summary.locator("tbody tr")).to_have_count(3)


def test_tags_are_edited_on_the_run_page(server: LocalServer, page: Page) -> None:
    run = create_run(server, "info", f"tags-{uuid.uuid4().hex[:6]}", tags=["from-monitor"])
    open_run_page(page, server, run["id"])
    chips = page.locator("#tag-list .tag")
    expect(chips).to_have_text(["from-monitor"])

    page.get_by_role("button", name="edit tags").click()
    field = page.get_by_label("Tags, separated by commas")
    expect(field).to_be_focused()
    expect(field).to_have_value("from-monitor")
    field.fill("baseline, bf16 ,, baseline")
    page.keyboard.press("Enter")
    expect(chips).to_have_text(["baseline", "bf16"])
    expect(page.get_by_role("button", name="edit tags")).to_be_focused()
    stored = httpx.get(f"{server.url}/api/runs/{run['id']}", timeout=30).json()
    assert stored["tags"] == ["baseline", "bf16"]

    page.get_by_role("button", name="edit tags").click()
    field.fill("x" * 65)
    page.keyboard.press("Enter")
    expect(page.locator("#tags-error")).to_contain_text("Invalid field 'tags'")
    page.keyboard.press("Escape")
    expect(chips).to_have_text(["baseline", "bf16"])

    patch(server, run["id"], tags=["edited-elsewhere"])  # another tab or the API: live
    expect(chips).to_have_text(["edited-elsewhere"])


def test_runs_page_filters_by_project_tag_status_and_name(server: LocalServer,
                                                          page: Page) -> None:
    project = f"filters-{uuid.uuid4().hex[:6]}"
    runs = {name: create_run(server, project, name, tags=tags, config={"lr": lr, "opt": {
        "name": opt}}) for name, tags, lr, opt in [
        ("resnet-a", ["baseline"], 0.1, "sgd"), ("resnet-b", ["ablation"], 0.2, "adamw"),
        ("vit-a", ["baseline", "vit"], 0.3, "adamw")]}
    create_run(server, f"other-{project}", "resnet-z", tags=["baseline"])
    patch(server, runs["resnet-b"]["id"], status="crashed", summary={"best": 0.5})
    page.goto(f"{server.url}/?project={project}")
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("#runs-count")).to_have_text("3 runs")
    names = rows.locator("td.name")

    page.locator("#tag-filter").select_option("baseline")
    expect(names).to_have_text(["vit-a", "resnet-a"])
    expect(page.locator("#runs-count")).to_have_text("2 of 3 runs")
    page.get_by_label("name", exact=True).fill("VIT")
    expect(names).to_have_text(["vit-a"])
    page.get_by_label("name", exact=True).fill("")
    page.locator("#tag-filter").select_option("")
    page.locator("#status-filter").select_option("crashed")
    expect(names).to_have_text(["resnet-b"])
    assert "status=crashed" in page.url

    page.reload()  # the filters live in the URL
    expect(page.locator("#status-filter")).to_have_value("crashed")
    expect(names).to_have_text(["resnet-b"])
    page.locator("#status-filter").select_option("")
    expect(rows).to_have_count(3)

    # Live: a tag set elsewhere moves a run into the filtered list.
    page.locator("#tag-filter").select_option("ablation")
    expect(names).to_have_text(["resnet-b"])
    patch(server, runs["resnet-a"]["id"], tags=["ablation"])
    expect(names).to_have_text(["resnet-b", "resnet-a"])
    page.locator("#tag-filter").select_option("")

    # Columns from config and summary, kept for the next visit.
    page.locator(".columns-picker summary").click()
    page.get_by_label("config.opt.name").check()
    page.get_by_label("summary.best").check()
    header = page.locator("#runs-table thead th.field")
    expect(header).to_have_text(["config.opt.name", "summary.best"])
    row = page.locator(f"tr[data-run-id='{runs['resnet-b']['id']}']")
    expect(row.locator("td.field")).to_have_text(["adamw", "0.5"])
    expect(page.locator(f"tr[data-run-id='{runs['vit-a']['id']}'] td.field")).to_have_text(
        ["adamw", "—"])
    page.reload()
    expect(header).to_have_text(["config.opt.name", "summary.best"])


def test_compare_page_overlays_any_key_live(server: LocalServer, page: Page) -> None:
    project = f"compare-{uuid.uuid4().hex[:6]}"
    runs = [create_run(server, project, name) for name in ("small-lr", "large-lr")]
    for i, run in enumerate(runs):
        post_points(server, run["id"], [
            *({"key": "val/acc", "step": s, "value": 0.5 + i / 10 + s / 1000} for s in range(5)),
            *({"key": "eval/live/accuracy", "step": s, "value": 0.8} for s in (2, 4)),
            {"key": "lr", "step": 0, "value": 0.1 * (i + 1)}])
    ids = ",".join(str(run["id"]) for run in runs)
    page.goto(f"{server.url}/compare.html?ids={ids}")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    charts = page.locator("#compare-charts .chart")
    expect(charts).to_have_count(1)  # by default: eval metrics, relative drift, train/loss
    expect(charts.first).to_have_attribute("aria-label", "eval: accuracy")

    page.get_by_label("filter keys").fill("^val/")
    expect(page.locator("#key-choices label:visible")).to_have_count(1)
    page.get_by_label("val/acc").check()
    expect(charts).to_have_count(2)
    chart = page.locator("#compare-charts .chart[aria-label='val/acc']")
    chart_id = chart.get_attribute("id") or ""
    page.wait_for_function("id => document.getElementById(id).data.length === 2", arg=chart_id)
    traces = chart_data(page, chart_id)
    assert sorted(t["name"] for t in traces) == ["large-lr", "small-lr"]
    assert {t["line"]["dash"] for t in traces} == {"solid", "dash"}
    assert "keys=val%2Facc" in page.url

    post_points(server, runs[0]["id"], [{"key": "val/acc", "step": 5, "value": 0.9}])
    page.wait_for_function(
        "id => document.getElementById(id).data.some(t => t.x.length === 6)", arg=chart_id)
    page.get_by_label("filter keys").fill("")
    page.get_by_label("eval/live/accuracy").uncheck()
    expect(charts).to_have_count(1)


def boxes_of(page: Page, chart_id: str) -> dict[str, dict[str, float]]:
    """Screen boxes of a Plotly chart's title, legend and plot area."""
    return dict(page.evaluate("""id => {
        const div = document.getElementById(id);
        const box = (sel) => { const r = div.querySelector(sel).getBoundingClientRect();
          return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
        return {title: box('.gtitle'), legend: box('.legend'), plot: box('.nsewdrag')};
    }""", chart_id))


def test_a_long_compare_legend_covers_neither_title_nor_plot(server: LocalServer,
                                                              page: Page) -> None:
    # Two runs x six models: 12 legend entries ("digits-seed0 · ema_sigma_rel_0.05"). Anchored
    # to the plot's top, two rows of them grew over the chart's title (seen in
    # docs/img/compare.png); the legend now hangs under the title and pushes the plot down.
    project = f"legend-{uuid.uuid4().hex[:6]}"
    models = ("live", "ema_0.99", "ema_0.999", "ema_sigma_rel_0.05", "ema_sigma_rel_0.1", "swa")
    runs = [create_run(server, project, f"digits-seed{i}") for i in range(2)]
    for run in runs:
        post_points(server, run["id"], [
            {"key": f"eval/{model}/accuracy", "step": s, "value": 0.9 + k / 100}
            for k, model in enumerate(models) for s in (100, 200, 300)])
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{server.url}/compare.html?ids={','.join(str(r['id']) for r in runs)}")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    chart_id = page.locator("#compare-charts .chart[aria-label='eval: accuracy']").get_attribute(
        "id") or ""
    page.wait_for_function("id => document.getElementById(id).data.length >= 12", arg=chart_id)
    boxes = boxes_of(page, chart_id)
    title, legend, plot = boxes["title"], boxes["legend"], boxes["plot"]
    assert legend["top"] >= title["bottom"], boxes  # the title stays readable
    assert plot["top"] >= legend["bottom"], boxes  # the legend does not cover the plot
    assert plot["bottom"] - plot["top"] >= 150, boxes  # the plot keeps its height
    page.set_viewport_size({"width": 700, "height": 900})  # narrower: more rows, taller chart
    page.wait_for_function("id => document.getElementById(id).clientWidth < 700", arg=chart_id)
    page.locator("#smoothing").fill("0.5")  # a redraw at the new width
    page.wait_for_function("id => document.getElementById(id).dataset.smoothing === '0.5'",
                           arg=chart_id)
    boxes = boxes_of(page, chart_id)
    title, legend, plot = boxes["title"], boxes["legend"], boxes["plot"]
    assert legend["top"] >= title["bottom"] and plot["top"] >= legend["bottom"], boxes
    assert plot["bottom"] - plot["top"] >= 150, boxes

"""The run page in a real Chromium against a real server: live traces, eval table, heatmap,
snapshot export, reconnect and catch-up, token prompt. Data go in over REST (httpx)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Route, WebSocketRoute, expect
from safetensors.torch import load

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import (
    create_run,
    eval_points,
    post_points,
    safetensors_file,
    sha256,
    training_points,
    upload_snapshot,
)
from tests.e2e.pages import TRACE_LENGTHS, open_run_page, trace_lengths, wait_trace_lengths

pytestmark = pytest.mark.e2e

# Counts Plotly calls on the line charts (the heatmap re-reads on its own, throttled).
COUNT_PLOTLY_CALLS = """() => {
  window.plotCalls = {react: 0, newPlot: 0, extendTraces: 0};
  for (const name of Object.keys(window.plotCalls)) {
    const original = Plotly[name];
    Plotly[name] = (div, ...rest) => {
      if (div.id !== "chart-heatmap") window.plotCalls[name] += 1;
      return original(div, ...rest);
    };
  }
}"""


def test_traces_grow_live_with_extend_traces(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 1000, 50)))
    open_run_page(page, server, run["id"])
    assert trace_lengths(page, "chart-norms") == {
        "ema_0.999": 20, "ema_0.9999": 20, "live": 20, "swa": 20}
    assert trace_lengths(page, "chart-train-loss") == {"loss": 20}
    page.evaluate(COUNT_PLOTLY_CALLS)

    post_points(server, run["id"], training_points(range(1000, 1500, 50)))

    for chart_id in ("chart-norms", "chart-drift", "chart-rel-drift", "chart-decay",
                     "chart-train-loss", "chart-train-lr"):
        wait_trace_lengths(page, chart_id, 30)
    calls = page.evaluate("window.plotCalls")
    assert calls["react"] == 0 and calls["newPlot"] == 0
    assert calls["extendTraces"] >= 1
    expect(page.locator("#last-step")).to_have_text("1450")
    assert page.evaluate("document.getElementById('chart-norms').data[2].y.at(-1)") == (
        pytest.approx(40 + 1450 / 300))


def test_non_finite_values_become_gaps(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    points = [{"key": "weights/drift/swa", "step": step, "value": value}
              for step, value in [(0, 1.0), (10, "NaN"), (20, "Infinity"), (30, 0.5)]]
    post_points(server, run["id"], points)
    open_run_page(page, server, run["id"])
    assert page.evaluate("document.getElementById('chart-drift').data[0].y") == [
        1.0, None, None, 0.5]


def test_eval_table_updates_live(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 600, 100))
                + eval_points(500, {"live": 0.80, "ema_0.999": 0.82, "swa": 0.78}))
    open_run_page(page, server, run["id"])
    table = page.locator("table.eval-table[data-metric='accuracy']")
    expect(table.locator("tbody tr")).to_have_count(3)
    expect(table.locator("tr.winner th")).to_have_text("ema_0.999")

    post_points(server, run["id"], eval_points(
        1000, {"live": 0.85, "ema_0.999": 0.88, "ema_0.9999": 0.86, "swa": 0.91}))

    expect(table.locator("tbody tr")).to_have_count(4)
    expect(table.locator("tr.winner th")).to_have_text("swa")
    ema = table.locator("tr[data-model='ema_0.999'] td")
    expect(ema).to_have_text(["0.88", "1000", "0.88", "+0.03"])
    expect(table.locator("tr[data-model='live'] td")).to_have_text(["0.85", "1000", "0.85", "—"])
    expected = {"ema_0.999": 2, "live": 2, "swa": 2, "ema_0.9999": 1}  # a trace was added
    page.wait_for_function(f"JSON.stringify(({TRACE_LENGTHS})('chart-eval-accuracy'))"
                           f" === '{json.dumps(expected, separators=(',', ':'))}'")


def test_an_averager_with_nothing_averaged_is_marked_not_ranked(
    server: LocalServer, page: Page
) -> None:
    run = create_run(server)
    summary = {"averagers": {"ema_0.999": {"kind": "ema", "averaged": True, "averaged_from": 0},
                             "swa": {"kind": "swa", "averaged": False}}}
    httpx.patch(f"{server.url}/api/runs/{run['id']}", json={"summary": summary}).raise_for_status()
    # an old client evaluated the SWA's initial weights: "ahead of live" before
    post_points(server, run["id"], eval_points(0, {"live": 0.0982, "swa": 0.1058,
                                                   "ema_0.999": 0.0990}))
    open_run_page(page, server, run["id"])
    table = page.locator("table.eval-table[data-metric='accuracy']")
    swa = table.locator("tr[data-model='swa']")
    expect(swa).to_have_class("not-averaged")
    expect(swa.locator("td")).to_have_text(["—", "—", "—", "not averaged yet"])
    expect(table.locator("tr.winner th")).to_have_text("ema_0.999")

    summary["averagers"]["swa"] = {"kind": "swa", "averaged": True, "averaged_from": 500}
    httpx.patch(f"{server.url}/api/runs/{run['id']}", json={"summary": summary}).raise_for_status()
    post_points(server, run["id"], eval_points(500, {"live": 0.5, "swa": 0.6, "ema_0.999": 0.55}))
    expect(swa.locator("td")).to_have_text(["0.6", "500", "0.6", "+0.1"])
    expect(table.locator("tr.winner th")).to_have_text("swa")


def test_heatmap_and_log_toggle(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 1000, 50)))
    open_run_page(page, server, run["id"])
    heatmap = page.locator("#chart-heatmap")
    expect(heatmap).to_have_attribute("data-averager", "ema_0.999")
    figure = page.evaluate(
        "(() => { const t = document.getElementById('chart-heatmap').data[0];"
        " return {y: t.y, rows: t.z.length, cols: t.z[0].length, first: t.z[0][0],"
        " hover: t.hovertemplate}; })()")
    assert figure["y"] == ["conv1", "fc", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1"]
    assert (figure["rows"], figure["cols"]) == (5, 20)
    assert figure["first"] == pytest.approx(0.01)
    assert "layer %{y}" in figure["hover"] and "%{z" in figure["hover"]

    page.select_option("#heatmap-averager", "swa")
    expect(heatmap).to_have_attribute("data-averager", "swa")
    first = page.evaluate("document.getElementById('chart-heatmap').data[0].z[0][0]")
    assert first == pytest.approx(0.03)

    page.focus("#drift-log")
    page.keyboard.press("Space")
    for chart_id in ("chart-drift", "chart-rel-drift"):
        page.wait_for_function(
            "id => document.getElementById(id)._fullLayout.yaxis.type === 'log'", arg=chart_id)
    assert page.evaluate("document.getElementById('chart-norms')._fullLayout.yaxis.type") == (
        "linear")


def test_export_best_ema_snapshot(server: LocalServer, page: Page, tmp_path: Path) -> None:
    run = create_run(server, project="cifar", name="resnet")
    post_points(server, run["id"], training_points(range(0, 200, 50)))
    open_run_page(page, server, run["id"])
    files = {seed: safetensors_file(seed) for seed in range(4)}
    uploads = [("ema_0.999", 500, 0.81, 0), ("ema_0.999", 1000, 0.86, 1),
               ("ema_0.999", 1500, 0.84, 2), ("swa", 1000, 0.90, 3)]
    for averager, step, value, seed in uploads:
        upload_snapshot(server, run["id"], files[seed], averager=averager, step=step,
                        metric="accuracy", value=value)

    rows = page.locator("#snapshots-table tbody tr")
    expect(rows).to_have_count(4)  # arrived over the websocket, no reload
    expect(page.locator("#export-averager")).to_have_value("ema_0.999")
    expect(page.locator("#export-note")).to_contain_text("best accuracy 0.86 at step 1000")
    with page.expect_download() as download_info:
        page.click("#export-best")
    download = download_info.value
    assert download.suggested_filename == "cifar-resnet-ema_0.999-step1000.safetensors"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    data = saved.read_bytes()
    assert sha256(data) == sha256(files[1])
    assert set(load(data)) == {"fc.weight", "fc.bias"}  # valid safetensors

    swa_row = rows.filter(has_text="swa")
    expect(swa_row.locator("code")).to_have_attribute("title", sha256(files[3]))
    with page.expect_download() as download_info:
        swa_row.get_by_role("link", name="download").click()
    saved = tmp_path / "swa.safetensors"
    download_info.value.save_as(saved)
    assert sha256(saved.read_bytes()) == sha256(files[3])


def test_reconnects_and_catches_up(live_server: LocalServer, page: Page) -> None:
    run = create_run(live_server)
    post_points(live_server, run["id"], training_points(range(0, 500, 50)))
    open_run_page(page, live_server, run["id"])
    indicator = page.locator("#conn")

    live_server.kill()
    expect(indicator).to_have_attribute("data-state", "reconnecting")
    expect(indicator).to_contain_text("reconnecting")
    live_server.start()
    post_points(live_server, run["id"], training_points(range(500, 800, 50)))

    expect(indicator).to_have_attribute("data-state", "live")
    for chart_id in ("chart-norms", "chart-rel-drift", "chart-train-loss"):
        wait_trace_lengths(page, chart_id, 16)
    expect(page.locator("#last-step")).to_have_text("750")
    post_points(live_server, run["id"], training_points(range(800, 850, 50)))
    wait_trace_lengths(page, "chart-norms", 17)


def test_points_written_before_the_socket_subscribed_are_caught_up(
    server: LocalServer, page: Page
) -> None:
    # The page reads over REST before its websocket subscribes (first_load.js): points
    # written between the two are in neither, unless the hello's latest points are caught up.
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 300, 50)))
    held: list[WebSocketRoute] = []
    page.route_web_socket(f"**/ws/runs/{run['id']}", lambda ws: held.append(ws))
    page.goto(f"{server.url}/run.html?id={run['id']}")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    assert trace_lengths(page, "chart-norms")["live"] == 6
    post_points(server, run["id"], training_points(range(300, 400, 50)))
    held[0].connect_to_server()  # subscribes now: its hello holds step 350
    wait_trace_lengths(page, "chart-norms", 8)
    expect(page.locator("#last-step")).to_have_text("350")
    post_points(server, run["id"], training_points(range(400, 450, 50)))  # then live
    wait_trace_lengths(page, "chart-norms", 9)


def test_first_load_reads_the_run_and_keys_once(server: LocalServer, page: Page) -> None:
    # run.html's inline script asks for the run and its keys before any module has loaded;
    # first_load.js takes those answers instead of asking again.
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 300, 50)))
    paths: list[str] = []
    page.on("request", lambda request: paths.append(request.url.split(server.url)[1]))
    open_run_page(page, server, run["id"])
    assert paths.count(f"/api/runs/{run['id']}") == 1
    assert paths.count(f"/api/runs/{run['id']}/keys") == 1
    assert trace_lengths(page, "chart-norms")["live"] == 6


def test_asks_for_the_token_once(tmp_path: Path, page: Page) -> None:
    with LocalServer(data_dir=tmp_path / "data", token="s3cret") as server:
        run = create_run(server)
        post_points(server, run["id"], training_points(range(0, 300, 50)))
        page.goto(f"{server.url}/run.html?id={run['id']}")
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("This server requires a token.")
        page.fill("#token-input", "wrong")
        page.keyboard.press("Enter")
        expect(dialog).to_contain_text("That token was refused: try again.")
        page.fill("#token-input", "s3cret")
        page.keyboard.press("Enter")
        page.wait_for_function("document.body.dataset.state === 'ready'")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        assert trace_lengths(page, "chart-norms")["live"] == 6

        page.reload()  # kept for the tab's session: no second prompt
        page.wait_for_function("document.body.dataset.state === 'ready'")
        expect(dialog).to_be_hidden()
        post_points(server, run["id"], training_points(range(300, 350, 50)))
        wait_trace_lengths(page, "chart-norms", 7)


def test_unknown_run_shows_the_server_error(server: LocalServer, page: Page) -> None:
    page.goto(f"{server.url}/run.html?id=999")
    expect(page.locator("#error")).to_have_text("Run not found")
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")
    expect(page.locator("#conn")).to_have_text("Run not found")  # no reconnect, no token prompt
    expect(page.locator("#token-dialog")).to_have_count(0)
    page.goto(f"{server.url}/run.html?id=abc")
    expect(page.locator("#error")).to_have_text(
        'Invalid run id "abc": open this page as /run.html?id=<run id>')


def test_deleted_run_stops_the_page(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 200, 50)))
    open_run_page(page, server, run["id"])
    httpx.delete(f"{server.url}/api/runs/{run['id']}", timeout=30).raise_for_status()
    expect(page.locator("#error")).to_have_text("This run was deleted.")
    expect(page.locator("#conn")).to_have_attribute("data-state", "offline")


def test_page_opened_before_any_point_fills_live(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    open_run_page(page, server, run["id"])
    assert page.evaluate("document.getElementById('chart-norms').data.length") == 0
    expect(page.locator("#eval-tables")).to_have_text("No eval metrics yet.")

    post_points(server, run["id"], training_points(range(0, 300, 50))
                + eval_points(250, {"live": 0.7, "swa": 0.75}))

    wait_trace_lengths(page, "chart-norms", 6)
    assert sorted(trace_lengths(page, "chart-norms")) == [
        "ema_0.999", "ema_0.9999", "live", "swa"]
    wait_trace_lengths(page, "chart-train-loss", 6)  # the chart was created on the fly
    expect(page.locator("table.eval-table tr.winner th")).to_have_text("swa")
    expect(page.locator("#heatmap-averager")).to_have_value("ema_0.999")
    page.wait_for_function(  # the heatmap re-reads on its own once layer points arrive
        "document.getElementById('chart-heatmap').data[0]?.z.length === 5")


def test_page_opened_while_the_server_is_down_loads_once_it_answers(
    server: LocalServer, page: Page
) -> None:
    # The API and the websocket are unreachable at first (a server restarting as the page
    # opens): the page shows the error, and must read everything once the server answers,
    # although its first successful socket open is not a "reconnect".
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 300, 50)))
    down = {"on": True}

    def socket(ws: WebSocketRoute) -> None:
        if down["on"]:
            ws.close(code=1011, reason="server restarting")
        else:
            ws.connect_to_server()

    page.route_web_socket(f"**/ws/runs/{run['id']}", socket)
    page.route("**/api/**", lambda route: route.abort() if down["on"] else route.continue_())
    page.goto(f"{server.url}/run.html?id={run['id']}")
    expect(page.locator("#error")).to_be_visible()
    down["on"] = False
    wait_trace_lengths(page, "chart-norms", 6)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#error")).to_be_hidden()
    post_points(server, run["id"], training_points(range(300, 350, 50)))
    wait_trace_lengths(page, "chart-norms", 7)


def test_heatmap_reread_while_the_server_is_down_is_no_page_error(
    server: LocalServer, page: Page
) -> None:
    # Live layer points schedule a heatmap re-read 3 s later; if the server is gone by then,
    # the failed fetch must not surface as an unhandled rejection (the page fixture fails
    # the test on any page error).
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 300, 50)))
    open_run_page(page, server, run["id"])
    aborted: list[str] = []

    def abort(route: Route) -> None:
        aborted.append(route.request.url)
        route.abort()

    page.route("**/api/runs/*/metrics?*", abort)
    post_points(server, run["id"], training_points(range(300, 350, 50)))
    wait_trace_lengths(page, "chart-norms", 7)
    deadline = time.monotonic() + 15
    while not aborted and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert aborted, "the heatmap did not try to re-read"
    page.wait_for_timeout(500)  # let the rejection, if any, reach the page fixture

"""Export and delete from the run page (issue 15, items 4 and 5): each chart's series as CSV
and JSON, the whole run as a zip, and deleting the run (confirmed) with its snapshot files."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import (
    create_run,
    post_points,
    safetensors_file,
    training_points,
    upload_snapshot,
)
from tests.e2e.pages import open_run_page, wait_trace_lengths

pytestmark = pytest.mark.e2e


def download(page: Page, link_name: str, tmp_path: Path) -> tuple[str, bytes]:
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name).click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    return info.value.suggested_filename, saved.read_bytes()


def test_each_chart_downloads_its_series_at_full_resolution(
    server: LocalServer, page: Page, tmp_path: Path
) -> None:
    run = create_run(server, project="export", name="csv-json")
    # 3,000 steps: the chart holds 2,000 (downsampled), the download every point.
    post_points(server, run["id"], [{"key": "val/acc", "step": s, "value": s / 3000}
                                    for s in range(3000)])
    post_points(server, run["id"], training_points(range(0, 200, 50)))
    open_run_page(page, server, run["id"])
    assert page.evaluate("document.getElementById('chart-val-acc').data[0].x.length") <= 2000

    name, data = download(page, "Download val/acc as CSV", tmp_path)
    assert name == "export-csv-json-val_acc.csv"
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == ["key", "step", "value", "wall_time"] and len(rows) == 3001
    assert rows[1500][:3] == ["val/acc", "1499", repr(1499 / 3000)]

    name, data = download(page, "Download ‖live‖ and ‖shadow‖ (global L2 norm) as JSON", tmp_path)
    assert name == "export-csv-json-points.json"
    series = json.loads(data)["series"]
    assert sorted(series) == ["weights/norm/ema_0.999", "weights/norm/ema_0.9999",
                              "weights/norm/live", "weights/norm/swa"]
    assert series["weights/norm/live"]["steps"] == [0, 50, 100, 150]

    # A key that appears live joins its chart's download.
    post_points(server, run["id"], [{"key": "weights/norm/ema_0.9", "step": 0, "value": 1.0}])
    wait_trace_lengths(page, "chart-norms", 4)  # the new trace has 1 point: wait on the rest
    page.wait_for_function("document.getElementById('chart-norms').data.length === 5")
    _, data = download(page, "Download ‖live‖ and ‖shadow‖ (global L2 norm) as JSON", tmp_path)
    assert "weights/norm/ema_0.9" in json.loads(data)["series"]


def test_the_whole_run_downloads_as_a_zip(server: LocalServer, page: Page,
                                          tmp_path: Path) -> None:
    config = {"lr": 0.1, "model": {"depth": 18}}
    run = httpx.post(f"{server.url}/api/runs", json={"project": "export", "name": "zip",
                                                     "config": config}, timeout=30).json()
    post_points(server, run["id"], training_points(range(0, 200, 50)))
    upload_snapshot(server, run["id"], safetensors_file(1), averager="swa", step=150,
                    metric="accuracy", value=0.9)
    open_run_page(page, server, run["id"])
    name, data = download(page, "Download run (.zip)", tmp_path)
    assert name == "export-zip.zip"
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert json.loads(archive.read("config.json")) == config
    assert [s["step"] for s in json.loads(archive.read("snapshots.json"))] == [150]
    rows = list(csv.reader(io.StringIO(archive.read("points.csv").decode())))
    assert len(rows) == 1 + len(training_points(range(0, 200, 50)))


def test_delete_asks_then_removes_the_run_and_its_files(server: LocalServer,
                                                        page: Page) -> None:
    run = create_run(server, project="export", name="to-delete")
    post_points(server, run["id"], training_points(range(0, 200, 50)))
    for seed, step in enumerate((50, 100)):
        upload_snapshot(server, run["id"], safetensors_file(seed), averager="swa", step=step,
                        metric="accuracy", value=0.5 + seed / 10)
    folder = server.data_dir / "snapshots" / str(run["id"])
    assert len(list(folder.glob("*.safetensors"))) == 2
    open_run_page(page, server, run["id"])

    page.get_by_role("button", name="Delete run…").click()
    dialog = page.get_by_role("dialog", name="Delete run export / to-delete?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("2 snapshot files")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Enter")  # Cancel: nothing happens
    expect(dialog).to_be_hidden()
    assert httpx.get(f"{server.url}/api/runs/{run['id']}", timeout=30).status_code == 200

    page.get_by_role("button", name="Delete run…").click()
    dialog.get_by_role("button", name="Delete run").click()
    page.wait_for_url("**/?project=export&deleted=to-delete")
    expect(page.locator("#notice")).to_have_text(
        "Run to-delete was deleted, with its snapshot files.")
    assert httpx.get(f"{server.url}/api/runs/{run['id']}", timeout=30).status_code == 404
    assert not folder.exists()
    expect(page.locator(f"tr[data-run-id='{run['id']}']")).to_have_count(0)

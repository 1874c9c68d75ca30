"""Downloads: series at full resolution as CSV/JSON, the whole run as a zip (docs/api.md)."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from typing import Any

from fastapi.testclient import TestClient

from tests.backend.conftest import assert_error, points
from tests.backend.utils import safetensors_bytes
from tests.utils.databases import both_databases

ODD_KEY = 'val/acc, "top-1"'  # a comma and quotes: quoted in the CSV


def post(client: TestClient, run_id: int, batch: list[dict[str, Any]]) -> None:
    response = client.post(f"/api/runs/{run_id}/metrics", json={"points": batch})
    assert response.status_code == 200, response.text


def filled(client: TestClient, run: dict[str, Any]) -> int:
    run_id = int(run["id"])
    post(client, run_id, [{"key": "train/loss", "step": s, "value": 1 / (s + 1),
                           "wall_time": 1.7e9 + s / 10} for s in range(5000)])
    post(client, run_id, [{"key": ODD_KEY, "step": s, "value": v, "wall_time": 1.7e9}
                          for s, v in enumerate([0.5, "NaN", "Infinity", "-Infinity"])])
    return run_id


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@both_databases
def test_points_csv_is_every_point_at_full_resolution(client: TestClient,
                                                      run: dict[str, Any]) -> None:
    run_id = filled(client, run)
    response = client.get(f"/api/runs/{run_id}/export/points",
                          params={"keys": ["train/loss", ODD_KEY]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="demo-run-1-points.csv"'
    rows = read_csv(response.text)
    assert rows[0] == ["key", "step", "value", "wall_time"]
    loss = [row for row in rows[1:] if row[0] == "train/loss"]
    assert len(loss) == 5000  # not downsampled (GET /metrics keeps 2,000)
    assert [float(v) for v in loss[123][1:]] == [123, 1 / 124, 1.7e9 + 12.3]  # exact floats
    odd = [row for row in rows[1:] if row[0] == ODD_KEY]
    assert [row[2] for row in odd] == ["0.5", "NaN", "Infinity", "-Infinity"]
    assert math.isnan(float(odd[1][2])) and float(odd[2][2]) == math.inf


@both_databases
def test_points_json_has_the_metrics_shape(client: TestClient, run: dict[str, Any]) -> None:
    run_id = filled(client, run)
    response = client.get(f"/api/runs/{run_id}/export/points",
                          params={"keys": ODD_KEY, "format": "json"})
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == (
        'attachment; filename="demo-run-1-val_acc_top-1_.json"')
    assert response.json() == {"series": {ODD_KEY: {
        "steps": [0, 1, 2, 3], "values": [0.5, "NaN", "Infinity", "-Infinity"],
        "wall_times": [1.7e9] * 4}}}
    everything = client.get(f"/api/runs/{run_id}/export/points", params={"format": "json"})
    series = everything.json()["series"]
    assert sorted(series) == sorted(["train/loss", ODD_KEY])
    assert len(series["train/loss"]["steps"]) == 5000
    missing = client.get(f"/api/runs/{run_id}/export/points",
                         params={"keys": "nope", "format": "json"}).json()
    assert missing == {"series": {"nope": {"steps": [], "values": [], "wall_times": []}}}


@both_databases
def test_points_errors(client: TestClient, run: dict[str, Any]) -> None:
    assert_error(client.get("/api/runs/999/export/points"), 404, "Run not found")
    error = assert_error(client.get(f"/api/runs/{run['id']}/export/points",
                                    params={"format": "xml"}), 422,
                         "Invalid query parameter 'format': Input should be 'csv' or 'json'")
    assert error["details"][0]["loc"] == ["query", "format"]
    # Checked before the stream starts: PostgreSQL refused the NUL mid-response, which cut
    # the download short (found by the fuzzing, GET .../export/points?keys=%00).
    assert_error(client.get(f"/api/runs/{run['id']}/export/points", params={"keys": "a\x00"}),
                 422, "Invalid query parameter 'keys': "
                      "String should not contain NUL (\\u0000) characters")


@both_databases
def test_run_zip_holds_points_config_run_and_snapshots(client: TestClient) -> None:
    config = {"lr": 0.1, "optimizer": {"name": "sgd", "momentum": 0.9}, "clip": "Infinity"}
    run = client.post("/api/runs", json={"project": "cifar", "name": "resnet/18",
                                         "config": config}).json()
    run_id = filled(client, run)
    upload = client.post(f"/api/runs/{run_id}/snapshots",
                         data={"averager": "ema_0.999", "step": "100", "metric": "accuracy",
                               "value": "0.9"},
                         files={"file": ("f.safetensors", safetensors_bytes())})
    assert upload.status_code == 201
    response = client.get(f"/api/runs/{run_id}/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == 'attachment; filename="cifar-resnet_18.zip"'
    assert "content-encoding" not in response.headers  # a zip is not gzipped again
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["config.json", "points.csv", "run.json",
                                          "snapshots.json"]
    assert json.loads(archive.read("config.json")) == config
    assert json.loads(archive.read("run.json")) == client.get(f"/api/runs/{run_id}").json()
    snapshots = json.loads(archive.read("snapshots.json"))
    assert [(s["averager"], s["step"], s["sha256"]) for s in snapshots] == [
        ("ema_0.999", 100, upload.json()["sha256"])]
    csv_text = client.get(f"/api/runs/{run_id}/export/points").text
    assert archive.read("points.csv").decode() == csv_text
    assert len(read_csv(csv_text)) == 1 + 5000 + 4


@both_databases
def test_run_zip_of_a_missing_run(client: TestClient) -> None:
    assert_error(client.get("/api/runs/999/export"), 404, "Run not found")


@both_databases
def test_an_empty_run_exports_headers_only(client: TestClient, run: dict[str, Any]) -> None:
    assert client.get(f"/api/runs/{run['id']}/export/points").text == (
        "key,step,value,wall_time\n")
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/runs/{run['id']}/export").content))
    assert archive.read("points.csv") == b"key,step,value,wall_time\n"
    assert json.loads(archive.read("snapshots.json")) == []


@both_databases
def test_large_export_streams(client: TestClient, run: dict[str, Any]) -> None:
    post(client, int(run["id"]), points("a", range(50_000)))
    with client.stream("GET", f"/api/runs/{run['id']}/export/points") as response:
        chunks = [chunk for chunk in response.iter_raw()]
    assert len(chunks) > 1  # sent in pieces, not built whole first

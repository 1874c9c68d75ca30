from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load

from emaboard_server.app.core.config import Settings
from emaboard_server.app.main import create_app
from tests.backend.conftest import HOSTS, assert_error
from tests.backend.utils import safetensors_bytes
from tests.utils.databases import both_databases


def upload(
    client: TestClient,
    run_id: int,
    payload: bytes | None = None,
    filename: str = "w.safetensors",
    **fields: Any,
) -> Any:
    data = {"averager": "ema_0.999", "step": "100", **{k: str(v) for k, v in fields.items()}}
    files = {
        "file": (
            filename,
            payload if payload is not None else safetensors_bytes(),
            "application/octet-stream",
        )
    }
    return client.post(f"/api/runs/{run_id}/snapshots", data=data, files=files)


def stored_files(settings: Settings) -> list[Path]:
    return sorted(p for p in (settings.data_dir / "snapshots").rglob("*") if p.is_file())


@both_databases
def test_upload_validates_hashes_and_stores_under_a_generated_name(
    client: TestClient, run: dict[str, Any], settings: Settings
) -> None:
    payload = safetensors_bytes({"averager": "ema_0.999", "decay": "0.999"})
    response = upload(
        client,
        run["id"],
        payload,
        filename="../../etc/passwd",
        metric="accuracy",
        value=0.9,
        metadata=json.dumps({"note": "x"}),
    )
    assert response.status_code == 201, response.text
    snap = response.json()
    assert snap["sha256"] == hashlib.sha256(payload).hexdigest()
    assert snap["size_bytes"] == len(payload)
    assert (snap["averager"], snap["step"], snap["metric"], snap["value"]) == (
        "ema_0.999",
        100,
        "accuracy",
        0.9,
    )
    assert snap["metadata"] == {"averager": "ema_0.999", "decay": "0.999", "note": "x"}
    assert snap["download_url"] == f"/api/runs/{run['id']}/snapshots/{snap['id']}/file"
    [path] = stored_files(settings)
    assert path.parent == settings.data_dir / "snapshots" / str(run["id"])
    assert "passwd" not in path.name and path.suffix == ".safetensors"
    assert path.read_bytes() == payload


@both_databases
def test_list_read_download_delete(
    client: TestClient, run: dict[str, Any], settings: Settings
) -> None:
    base = f"/api/runs/{run['id']}/snapshots"
    a = upload(client, run["id"], safetensors_bytes(scale=1.0), step=10).json()
    b = upload(client, run["id"], safetensors_bytes(scale=2.0), step=20, averager="swa").json()
    assert [s["id"] for s in client.get(base).json()] == [a["id"], b["id"]]
    assert [s["id"] for s in client.get(base, params={"averager": "swa"}).json()] == [b["id"]]
    assert client.get(f"{base}/{a['id']}").json() == a
    response = client.get(f"{base}/{b['id']}/file")
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{b["sha256"]}"'
    assert response.headers["content-type"] == "application/octet-stream"
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="demo-run-1-swa-step20.safetensors"'
    )
    assert load(response.content)["layer.weight"][0, 1] == 2.0
    assert client.delete(f"{base}/{a['id']}").status_code == 204
    assert_error(client.get(f"{base}/{a['id']}"), 404, "Snapshot not found")
    assert_error(client.get(f"{base}/{a['id']}/file"), 404, "Snapshot not found")
    assert_error(client.delete(f"{base}/{a['id']}"), 404, "Snapshot not found")
    assert len(stored_files(settings)) == 1


@both_databases
def test_best_snapshot_by_metric_and_mode(client: TestClient, run: dict[str, Any]) -> None:
    base = f"/api/runs/{run['id']}/snapshots"
    ids = {}
    for step, value, averager in [
        (1, 0.5, "ema_0.999"),
        (2, 0.9, "ema_0.999"),
        (3, 0.7, "swa"),
        (4, 0.95, "swa"),
    ]:
        ids[step] = upload(
            client,
            run["id"],
            safetensors_bytes(scale=step),
            step=step,
            averager=averager,
            metric="accuracy",
            value=value,
        ).json()["sha256"]
    upload(client, run["id"], safetensors_bytes(scale=9), step=9, metric="loss", value=0.01)
    upload(client, run["id"], safetensors_bytes(scale=10), step=10, metric="loss", value=0.5)
    upload(client, run["id"], safetensors_bytes(scale=11), step=11, metric="Val_Loss", value=0.2)
    upload(client, run["id"], safetensors_bytes(scale=12), step=12, metric="Val_Loss", value=0.9)
    assert (
        client.get(f"{base}/best", params={"metric": "accuracy"}).headers["etag"] == f'"{ids[4]}"'
    )
    best = client.get(f"{base}/best", params={"averager": "ema_0.999", "metric": "accuracy"})
    assert best.headers["etag"] == f'"{ids[2]}"'
    assert best.headers["content-disposition"].endswith('-ema_0.999-step2.safetensors"')
    worst = client.get(f"{base}/best", params={"metric": "accuracy", "mode": "min"})
    assert worst.headers["etag"] == f'"{ids[1]}"'
    loss = client.get(f"{base}/best", params={"metric": "loss"})  # min by default for a loss
    assert loss.headers["content-disposition"].endswith('-step9.safetensors"')
    # the one rule (ema_core.metric_keys.lower_is_better) ignores case, as the page does
    val_loss = client.get(f"{base}/best", params={"metric": "Val_Loss"})
    assert val_loss.headers["content-disposition"].endswith('-step11.safetensors"')
    assert_error(client.get(f"{base}/best", params={"metric": "f1"}), 404, "Snapshot not found")
    assert_error(
        client.get(f"{base}/best", params={"mode": "median"}),
        422,
        "Invalid query parameter 'mode': Input should be 'max' or 'min'",
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "shorter than the 8-byte header length"),
        (
            b"PK\x03\x04 this is a zip file, not safetensors",
            "header length 7595448452415441744 exceeds the file",
        ),
        ((5).to_bytes(8, "little") + b"[1,2]", "header is not a JSON object"),
        (
            (4).to_bytes(8, "little") + b"{no}",
            "header is not JSON "
            "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        ),
    ],
)
def test_non_safetensors_upload_is_400(
    client: TestClient, run: dict[str, Any], settings: Settings, payload: bytes, reason: str
) -> None:
    assert_error(
        upload(client, run["id"], payload), 400, f"File is not a valid safetensors file: {reason}"
    )
    assert stored_files(settings) == []


def test_truncated_safetensors_is_400(
    client: TestClient, run: dict[str, Any], settings: Settings
) -> None:
    payload = safetensors_bytes()[:-5]
    response = upload(client, run["id"], payload)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("File is not a valid safetensors file: ")
    assert stored_files(settings) == []


def test_upload_over_max_upload_bytes_is_413(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", allowed_hosts=HOSTS,
                        max_upload_bytes=64, token=None)
    with TestClient(create_app(settings)) as client:
        run_id = client.post("/api/runs", json={"project": "p", "name": "r"}).json()["id"]
        assert_error(
            upload(client, run_id), 413, "Upload too large: File larger than max_upload_bytes 64"
        )
        assert stored_files(settings) == []


def test_upload_to_missing_run_is_404(client: TestClient, settings: Settings) -> None:
    assert_error(upload(client, 12), 404, "Run not found")
    assert stored_files(settings) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"metadata": "{bad"},
            "Invalid field 'metadata': not JSON "
            "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
        ),
        ({"metadata": "[1]"}, "Invalid field 'metadata': expected a JSON object"),
        ({"step": "-1"}, "Invalid field 'step': Input should be greater than or equal to 0"),
        (
            {"value": "high"},
            "Invalid field 'value': "
            "Input should be a valid number, unable to parse string as a number",
        ),
    ],
)
def test_bad_form_fields_are_422(
    client: TestClient, run: dict[str, Any], fields: dict[str, str], message: str
) -> None:
    assert_error(upload(client, run["id"], **fields), 422, message)


def test_upload_without_file_is_422(client: TestClient, run: dict[str, Any]) -> None:
    response = client.post(f"/api/runs/{run['id']}/snapshots", data={"averager": "a", "step": "1"})
    assert_error(response, 422, "Invalid field 'file': Field required")


def test_snapshot_of_other_run_is_404(client: TestClient, run: dict[str, Any]) -> None:
    other = client.post("/api/runs", json={"project": "p", "name": "other"}).json()
    snap = upload(client, other["id"]).json()
    assert_error(
        client.get(f"/api/runs/{run['id']}/snapshots/{snap['id']}"), 404, "Snapshot not found"
    )
    assert_error(
        client.get(f"/api/runs/{run['id']}/snapshots/{snap['id']}/file"), 404, "Snapshot not found"
    )


def test_missing_run_on_snapshot_routes_is_404(client: TestClient) -> None:
    for url in (
        "/api/runs/9/snapshots",
        "/api/runs/9/snapshots/1",
        "/api/runs/9/snapshots/1/file",
        "/api/runs/9/snapshots/best",
    ):
        assert_error(client.get(url), 404, "Run not found")


@both_databases
def test_deleting_the_run_removes_its_snapshot_files(
    client: TestClient, run: dict[str, Any], settings: Settings
) -> None:
    upload(client, run["id"])
    upload(client, run["id"], step=200)
    assert len(stored_files(settings)) == 2
    client.delete(f"/api/runs/{run['id']}")
    assert stored_files(settings) == []
    assert not (settings.data_dir / "snapshots" / str(run["id"])).exists()


def test_row_whose_file_vanished_is_404(
    client: TestClient, run: dict[str, Any], settings: Settings
) -> None:
    snap = upload(client, run["id"]).json()
    for path in stored_files(settings):
        path.unlink()
    assert_error(
        client.get(f"/api/runs/{run['id']}/snapshots/{snap['id']}/file"), 404, "Snapshot not found"
    )
    assert client.get(f"/api/runs/{run['id']}/snapshots/{snap['id']}").status_code == 200


@both_databases
def test_non_finite_floats_in_metadata_travel_as_strings(
    client: TestClient, run: dict[str, Any]
) -> None:
    response = client.post(
        f"/api/runs/{run['id']}/snapshots",
        data={"averager": "swa", "step": "1", "metadata": '{"lr": NaN, "clip": [Infinity]}'},
        files={"file": ("f", safetensors_bytes())},
    )
    assert response.status_code == 201, response.text
    assert response.json()["metadata"]["lr"] == "NaN"
    assert response.json()["metadata"]["clip"] == ["Infinity"]

"""Body and object size caps against a real server (issue 14, item 1).

Before the fix a 147 MB ingest body was read whole and parsed on the event loop (413 only
after a 2.8 s stall and +857 MB RSS), and a 100 MB run config was stored and then sent with
every run list. The memory and latency figures are measured by ``bench/server_limits.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets

from emaboard_server.local_server import LocalServer
from tests.backend.conftest import assert_error
from tests.backend.utils import safetensors_bytes

MAX_BODY = 1 << 20
MAX_OBJECT = 4096
BODY_MESSAGE = f"Request body too large: the limit is {MAX_BODY} bytes (max_body_bytes)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    env = {"EMABOARD_MAX_BODY_BYTES": str(MAX_BODY), "EMABOARD_MAX_OBJECT_BYTES": str(MAX_OBJECT)}
    with LocalServer(tmp_path_factory.mktemp("limits") / "data", env=env) as proc:
        yield proc


@pytest.fixture
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def run_id(http: httpx.Client, request: pytest.FixtureRequest) -> int:
    response = http.post("/api/runs", json={"project": "limits", "name": request.node.name})
    return int(response.json()["id"])


def test_ingest_body_over_the_cap_is_refused_unread(http: httpx.Client, run_id: int) -> None:
    body = b'{"points": [' + b" " * (20 * MAX_BODY) + b"]}"  # Content-Length: 20 MiB
    response = http.post(f"/api/runs/{run_id}/metrics", content=body,
                         headers={"content-type": "application/json"})
    assert_error(response, 413, BODY_MESSAGE)
    assert http.get("/api/health").status_code == 200  # the same connection still works


def test_streamed_ingest_body_is_refused_once_it_passes_the_cap(
    http: httpx.Client, run_id: int
) -> None:
    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to refuse up front
        yield b'{"points": ['
        for _ in range(40):
            yield b'{"key": "a", "step": 1, "value": 1},' * 1000

    response = http.post(f"/api/runs/{run_id}/metrics", content=chunks(),
                         headers={"content-type": "application/json"})
    assert_error(response, 413, BODY_MESSAGE)
    assert http.get(f"/api/runs/{run_id}/keys").json() == []


def test_run_and_patch_bodies_have_the_same_cap(http: httpx.Client, run_id: int) -> None:
    big = json.dumps({"summary": {"x": "y" * (2 * MAX_BODY)}}).encode()
    response = http.patch(f"/api/runs/{run_id}", content=big,
                          headers={"content-type": "application/json"})
    assert_error(response, 413, BODY_MESSAGE)


def test_a_batch_under_the_cap_is_stored(http: httpx.Client, run_id: int) -> None:
    points = [{"key": "train/loss", "step": step, "value": 0.5} for step in range(10_000)]
    response = http.post(f"/api/runs/{run_id}/metrics", json={"points": points})
    assert response.json() == {"accepted": 10_000, "inserted": 10_000, "conflicts": 0}


def test_config_over_max_object_bytes_is_422_and_not_stored(http: httpx.Client) -> None:
    config = {"notes": "x" * MAX_OBJECT}
    response = http.post("/api/runs", json={"project": "limits", "name": "big", "config": config})
    size = len(json.dumps(config, separators=(",", ":")))
    assert_error(response, 422, f"Invalid field 'config': {size} bytes of JSON, over "
                 f"max_object_bytes {MAX_OBJECT}; keep it to hyperparameters and short results")
    assert all(run["name"] != "big" for run in http.get("/api/runs").json())


def test_resumed_config_must_fit_once_merged(http: httpx.Client) -> None:
    half = {"a": "x" * (MAX_OBJECT // 2)}
    created = http.post("/api/runs", json={"project": "limits", "name": "merge", "config": half})
    assert created.status_code == 201
    response = http.post("/api/runs", json={"project": "limits", "name": "merge",
                                            "config": {"b": "x" * (MAX_OBJECT // 2)}})
    assert response.status_code == 422
    assert "once merged with the stored config" in response.json()["error"]["message"]
    stored = http.get(f"/api/runs/{created.json()['id']}").json()
    assert stored["config"] == half  # the merge was rolled back


def test_summary_must_fit_once_merged(http: httpx.Client, run_id: int) -> None:
    url = f"/api/runs/{run_id}"
    assert http.patch(url, json={"summary": {"a": "x" * (MAX_OBJECT // 2)}}).status_code == 200
    response = http.patch(url, json={"summary": {"b": "x" * (MAX_OBJECT // 2)}})
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("Invalid field 'summary': ")
    assert set(http.get(url).json()["summary"]) == {"a"}


@pytest.mark.parametrize("file_metadata", [None, {"note": "x" * MAX_OBJECT}])
def test_snapshot_metadata_over_max_object_bytes_is_422(
    http: httpx.Client, run_id: int, file_metadata: dict[str, str] | None
) -> None:
    form: dict[str, Any] = {"averager": "swa", "step": "1"}
    if file_metadata is None:
        form["metadata"] = json.dumps({"note": "x" * MAX_OBJECT})
    files = {"file": ("f", safetensors_bytes(file_metadata))}
    response = http.post(f"/api/runs/{run_id}/snapshots", data=form, files=files)
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("Invalid field 'metadata': ")
    assert ("once merged with the file's __metadata__" in message) == (file_metadata is not None)
    assert http.get(f"/api/runs/{run_id}/snapshots").json() == []


def test_run_list_stays_small(http: httpx.Client, server: LocalServer) -> None:
    response = http.get("/api/runs")
    assert response.status_code == 200
    assert len(response.content) < 20 * MAX_OBJECT  # every run's config and summary fit
    assert not list((server.data_dir / "snapshots").glob("*/*.part"))


def test_runs_hello_fits_a_standard_websocket_client(server: LocalServer) -> None:
    # Before: a 100 MB config was stored, and the /ws/runs hello then exceeded the
    # websockets client's default 1 MiB message limit (close 1009).
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for n in range(5):
            http.post("/api/runs", json={"project": "hello", "name": f"full{n}",
                                         "config": {"x": "c" * (MAX_OBJECT - 16)}})
            assert http.post("/api/runs", json={"project": "hello", "name": f"huge{n}",
                                                "config": {"x": "c" * (1 << 20)}}
                             ).status_code in (413, 422)

    async def hello() -> dict[str, Any]:
        async with websockets.connect(f"{server.ws_url}/ws/runs?project=hello") as ws:
            return json.loads(await ws.recv())  # type: ignore[no-any-return]

    runs = asyncio.run(hello())["runs"]
    assert sorted(run["name"] for run in runs) == [f"full{n}" for n in range(5)]

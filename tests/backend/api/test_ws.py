"""Websockets through TestClient: hello, points, run changes, snapshots, run list."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from emaboard_server.app.api.close_codes import WS_4404_RUN_NOT_FOUND
from tests.backend.conftest import points
from tests.backend.utils import safetensors_bytes
from tests.utils.databases import both_databases


@both_databases
def test_hello_has_run_and_latest_values(client: TestClient, run: dict[str, Any]) -> None:
    client.post(
        f"/api/runs/{run['id']}/metrics",
        json={"points": points("a", range(3), 2.0) + [{"key": "b", "step": 1, "value": "NaN"}]},
    )
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        hello = ws.receive_json()
    assert hello["type"] == "hello"
    assert hello["run"]["id"] == run["id"] and hello["run"]["last_step"] == 2
    assert [(p["key"], p["step"], p["value"]) for p in hello["latest"]] == [
        ("a", 2, 2.0),
        ("b", 1, "NaN"),
    ]


@both_databases
def test_new_points_status_and_snapshots_are_pushed(
    client: TestClient, run: dict[str, Any]
) -> None:
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        ws.receive_json()
        client.post(f"/api/runs/{run['id']}/metrics", json={"points": points("a", range(3))})
        message = ws.receive_json()
        assert message["type"] == "points"
        assert [p["step"] for p in message["points"]] == [0, 1, 2]
        client.post(
            f"/api/runs/{run['id']}/metrics", json={"points": points("a", range(3))}
        )  # retry
        client.patch(f"/api/runs/{run['id']}", json={"status": "finished"})
        message = ws.receive_json()  # the retry pushed nothing: the next message is the status
        assert message["type"] == "run" and message["run"]["status"] == "finished"
        client.post(
            f"/api/runs/{run['id']}/snapshots",
            data={"averager": "swa", "step": "5"},
            files={"file": ("f", safetensors_bytes())},
        )
        message = ws.receive_json()
        assert message["type"] == "snapshot" and message["snapshot"]["step"] == 5


def test_other_runs_points_are_not_pushed(client: TestClient, run: dict[str, Any]) -> None:
    other = client.post("/api/runs", json={"project": "demo", "name": "other"}).json()
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        ws.receive_json()
        client.post(f"/api/runs/{other['id']}/metrics", json={"points": points("x", range(2))})
        client.post(f"/api/runs/{run['id']}/metrics", json={"points": points("mine", range(1))})
        assert [p["key"] for p in ws.receive_json()["points"]] == ["mine"]


def test_missing_run_closes_with_4404(client: TestClient) -> None:
    with client.websocket_connect("/ws/runs/999") as ws, pytest.raises(WebSocketDisconnect) as info:
        ws.receive_json()
    assert info.value.code == WS_4404_RUN_NOT_FOUND and info.value.reason == "Run not found"


def test_run_list_socket(client: TestClient, run: dict[str, Any]) -> None:
    with client.websocket_connect("/ws/runs?project=demo") as ws:
        first = ws.receive_json()
        assert first["type"] == "runs" and [r["id"] for r in first["runs"]] == [run["id"]]
        client.post("/api/runs", json={"project": "elsewhere", "name": "x"})  # filtered out
        created = client.post("/api/runs", json={"project": "demo", "name": "two"}).json()
        message = ws.receive_json()
        assert message == {"type": "run", "run": created}
        client.post(f"/api/runs/{run['id']}/metrics", json={"points": points("a", range(7))})
        moved = ws.receive_json()  # last_step moves are pushed by the ticker (<= 1/s per run)
        assert moved["type"] == "run" and moved["run"]["id"] == run["id"]
        assert moved["run"]["last_step"] == 6
        client.delete(f"/api/runs/{created['id']}")
        assert ws.receive_json() == {"type": "run_deleted", "id": created["id"]}


def test_pushed_points_are_valid_json_even_for_bare_nan_tokens(
    client: TestClient, run: dict[str, Any]
) -> None:
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        ws.receive_json()
        body = b'{"points": [{"key": "a", "step": 1, "value": NaN, "wall_time": 5.0}]}'
        client.post(
            f"/api/runs/{run['id']}/metrics",
            content=body,
            headers={"content-type": "application/json"},
        )
        message = ws.receive_json()
    assert message["points"] == [{"key": "a", "step": 1, "value": "NaN", "wall_time": 5.0}]


def test_points_pushed_as_posted_or_as_stored(client: TestClient, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}/metrics"
    with client.websocket_connect(f"/ws/runs/{run['id']}") as ws:
        ws.receive_json()
        exact = [
            {"key": "a", "step": 1, "value": 2, "wall_time": 3.5},
            {"key": "a", "step": 2, "value": "Infinity", "wall_time": 4.0},
        ]
        client.post(url, json={"points": exact})
        assert ws.receive_json()["points"] == exact
        repeated = [
            {"key": "b", "step": 1, "value": 1.0, "wall_time": 1.0},
            {"key": "b", "step": 1, "value": 9.0, "wall_time": 1.0},
            {"key": "a", "step": 2, "value": 5.0, "wall_time": 1.0},
        ]  # a/2 is stored
        client.post(url, json={"points": repeated})
        assert ws.receive_json()["points"] == [repeated[0]]

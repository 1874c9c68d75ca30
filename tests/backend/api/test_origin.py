"""Cross-site browser requests are refused; same-site pages and non-browser clients pass."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from emaboard_server.app.api.auth import CROSS_ORIGIN
from emaboard_server.app.api.close_codes import WS_4403_CROSS_ORIGIN
from tests.backend.conftest import assert_error, points

EVIL = {"Origin": "http://evil.example"}
SAME = {"Origin": "http://testserver"}  # TestClient's Host


def test_cross_site_writes_are_refused_and_store_nothing(
    client: TestClient, run: dict[str, Any]
) -> None:
    url = f"/api/runs/{run['id']}"
    body = {"points": points("a", range(3))}
    assert_error(client.post(url + "/metrics", json=body, headers=EVIL), 403, CROSS_ORIGIN)
    assert_error(client.delete(url, headers=EVIL), 403, CROSS_ORIGIN)
    assert_error(client.post("/api/runs", json={"project": "p", "name": "x"}, headers=EVIL),
                 403, CROSS_ORIGIN)
    assert client.get(url + "/keys").json() == []
    assert client.get(url, headers=EVIL).status_code == 200  # reads need no preflight guard


@pytest.mark.parametrize("headers", [SAME, {"Origin": "HTTP://TESTSERVER/"}, {}],
                         ids=["same-origin page", "case and slash", "no Origin (Monitor, curl)"])
def test_same_site_pages_and_non_browser_clients_may_write(
    client: TestClient, run: dict[str, Any], headers: dict[str, str]
) -> None:
    response = client.post(f"/api/runs/{run['id']}/metrics",
                           json={"points": points("a", range(2))}, headers=headers)
    assert response.status_code == 200 and response.json()["inserted"] == 2


def test_cross_site_websocket_is_closed_with_4403(
    client: TestClient, run: dict[str, Any]
) -> None:
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect(
        f"/ws/runs/{run['id']}", headers=EVIL
    ) as ws:
        ws.receive_json()
    assert info.value.code == WS_4403_CROSS_ORIGIN and info.value.reason == CROSS_ORIGIN
    with client.websocket_connect(f"/ws/runs/{run['id']}", headers=SAME) as ws:
        assert ws.receive_json()["type"] == "hello"

"""Table tests over every route: coverage, auth on every route, the one error shape."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from emaboard_server.app import crud
from emaboard_server.app.api.close_codes import WS_4401_INVALID_TOKEN, WS_4422_INVALID_REQUEST
from emaboard_server.app.api.deps import MAX_ROW_ID
from emaboard_server.app.api.routes import ws as ws_routes
from emaboard_server.app.core.config import Settings
from emaboard_server.app.main import create_app
from tests.backend.conftest import HOSTS, TOKEN, assert_error
from tests.backend.utils import posthoc_bytes, safetensors_bytes
from tests.utils.databases import both_databases

# (method, route path) -> (concrete URL, request kwargs). Ids 1/1 exist after ``seed``.
HTTP_CASES: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("GET", "/api/health"): ("/api/health", {}),
    ("POST", "/api/runs"): ("/api/runs", {"json": {"project": "p", "name": "r"}}),
    ("GET", "/api/runs"): ("/api/runs", {}),
    ("GET", "/api/runs/{run_id}"): ("/api/runs/1", {}),
    ("PATCH", "/api/runs/{run_id}"): ("/api/runs/1", {"json": {"status": "finished"}}),
    ("DELETE", "/api/runs/{run_id}"): ("/api/runs/1", {}),
    ("POST", "/api/runs/{run_id}/metrics"): (
        "/api/runs/1/metrics",
        {"json": {"points": [{"key": "a", "step": 1, "value": 1}]}},
    ),
    ("GET", "/api/runs/{run_id}/metrics"): ("/api/runs/1/metrics", {}),
    ("GET", "/api/runs/{run_id}/keys"): ("/api/runs/1/keys", {}),
    ("POST", "/api/runs/{run_id}/snapshots"): (
        "/api/runs/1/snapshots",
        {"data": {"averager": "swa", "step": "1"}, "files": {"file": ("f", safetensors_bytes())}},
    ),
    ("GET", "/api/runs/{run_id}/snapshots"): ("/api/runs/1/snapshots", {}),
    ("GET", "/api/runs/{run_id}/snapshots/best"): ("/api/runs/1/snapshots/best", {}),
    ("GET", "/api/runs/{run_id}/snapshots/{snapshot_id}"): ("/api/runs/1/snapshots/1", {}),
    ("GET", "/api/runs/{run_id}/snapshots/{snapshot_id}/file"): (
        "/api/runs/1/snapshots/1/file",
        {},
    ),
    ("DELETE", "/api/runs/{run_id}/snapshots/{snapshot_id}"): ("/api/runs/1/snapshots/1", {}),
    ("GET", "/api/runs/{run_id}/export/points"): ("/api/runs/1/export/points", {}),
    ("GET", "/api/runs/{run_id}/export"): ("/api/runs/1/export", {}),
    ("GET", "/api/runs/{run_id}/posthoc"): ("/api/runs/1/posthoc", {}),
    ("GET", "/api/runs/{run_id}/posthoc/solve"): (
        "/api/runs/1/posthoc/solve", {"params": {"sigma_rel": "0.05"}}),
    ("GET", "/api/runs/{run_id}/posthoc/file"): (
        "/api/runs/1/posthoc/file", {"params": {"sigma_rel": "0.05"}}),
}
WS_CASES = {"/ws/runs/{run_id}": "/ws/runs/1", "/ws/runs": "/ws/runs"}
OK = {200, 201, 204}


def with_query(kwargs: dict[str, Any], **params: str) -> dict[str, Any]:
    """Request kwargs with ``params`` added to the case's own query parameters."""
    return {**kwargs, "params": {**kwargs.get("params", {}), **params}}


def seed(client: TestClient, headers: dict[str, str]) -> None:
    """Run 1 with snapshot 1 (with a value, so ``best`` finds it) and a post-hoc snapshot."""
    client.post("/api/runs", json={"project": "p", "name": "r"}, headers=headers)
    client.post(
        "/api/runs/1/snapshots",
        headers=headers,
        data={"averager": "swa", "step": "1", "value": "1"},
        files={"file": ("f", safetensors_bytes())},
    )
    client.post(
        "/api/runs/1/snapshots",
        headers=headers,
        data={"averager": "ema_sigma_rel_0.05", "step": "1"},
        files={"file": ("f", posthoc_bytes(1, 0.05))},
    )


@pytest.fixture
def token_client(tmp_path: Path) -> Any:
    settings = Settings(data_dir=tmp_path / "d", allowed_hosts=HOSTS, token=TOKEN)
    with TestClient(create_app(settings)) as client:
        yield client


def test_every_route_is_in_the_table(app: Any) -> None:
    # Included routers stay nested in app.routes; the OpenAPI schema lists every HTTP route.
    http = {
        (method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
    }
    ws = {route.path for route in ws_routes.router.routes if isinstance(route, APIWebSocketRoute)}
    assert http == set(HTTP_CASES)
    assert ws == set(WS_CASES)


@pytest.mark.parametrize(("method", "path"), list(HTTP_CASES))
def test_every_route_works(client: TestClient, method: str, path: str) -> None:
    seed(client, {})
    url, kwargs = HTTP_CASES[(method, path)]
    response = client.request(method, url, **kwargs)
    assert response.status_code in OK, response.text


@pytest.mark.parametrize(
    ("method", "path"), [case for case in HTTP_CASES if case[1] != "/api/health"]
)
def test_every_api_route_needs_the_token(token_client: TestClient, method: str, path: str) -> None:
    seed(token_client, {"Authorization": f"Bearer {TOKEN}"})
    url, kwargs = HTTP_CASES[(method, path)]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN}):
        assert_error(
            token_client.request(method, url, headers=headers, **kwargs),
            401,
            "Invalid or missing token",
        )
    assert_error(
        token_client.request(method, url, **with_query(kwargs, token="wrong")),
        401,
        "Invalid or missing token",
    )
    assert token_client.get("/api/runs/1", params={"token": TOKEN}).status_code == 200


@pytest.mark.parametrize(("method", "path"), list(HTTP_CASES))
def test_every_route_accepts_the_token(token_client: TestClient, method: str, path: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    seed(token_client, headers)
    url, kwargs = HTTP_CASES[(method, path)]
    response = token_client.request(method, url, headers=headers, **kwargs)
    assert response.status_code in OK, response.text
    if method == "GET":  # browser downloads and links carry the token in the query
        response = token_client.request(method, url, **with_query(kwargs, token=TOKEN))
        assert response.status_code in OK, response.text


def test_health_never_needs_the_token(token_client: TestClient) -> None:
    assert token_client.get("/api/health").json()["status"] == "ok"


@pytest.mark.parametrize("path", list(WS_CASES))
@pytest.mark.parametrize("query", ["", "?token=wrong"])
def test_websockets_need_the_token(token_client: TestClient, path: str, query: str) -> None:
    seed(token_client, {"Authorization": f"Bearer {TOKEN}"})
    with (
        token_client.websocket_connect(WS_CASES[path] + query) as ws,
        pytest.raises(WebSocketDisconnect) as info,
    ):
        ws.receive_json()
    assert info.value.code == WS_4401_INVALID_TOKEN
    assert info.value.reason == "Invalid or missing token"


@pytest.mark.parametrize("path", list(WS_CASES))
def test_websockets_accept_the_token(token_client: TestClient, path: str) -> None:
    seed(token_client, {"Authorization": f"Bearer {TOKEN}"})
    with token_client.websocket_connect(WS_CASES[path] + f"?token={TOKEN}") as ws:
        assert ws.receive_json()["type"] in {"hello", "runs"}
    with token_client.websocket_connect(
        WS_CASES[path], headers={"Authorization": f"Bearer {TOKEN}"}
    ) as ws:
        assert ws.receive_json()["type"] in {"hello", "runs"}


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        (("GET", "/api/runs/404"), 404, "Run not found"),
        (("GET", "/api/no/such/route"), 404, "Not Found"),
        (("PUT", "/api/runs"), 405, "Method Not Allowed"),
        (
            (
                "POST",
                "/api/runs/1/snapshots",
                {"data": {"averager": "a", "step": "1"}, "files": {"file": ("f", b"junk")}},
            ),
            400,
            "File is not a valid safetensors file: shorter than the 8-byte header length",
        ),
        (
            (
                "POST",
                "/api/runs",
                {"content": b"{", "headers": {"content-type": "application/json"}},
            ),
            422,
            "Invalid JSON body: Expecting property name enclosed in double quotes "
            "at line 1 column 2",
        ),
        (
            ("GET", "/api/runs/abc"),
            422,
            "Invalid path parameter 'run_id': "
            "Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            (
                "POST",
                "/api/runs/1/metrics",
                {"json": {"points": [{"key": "a", "step": 0, "value": 1}] * 50_001}},
            ),
            413,
            "Too many points: 50001 > max_points_per_request 50000",
        ),
    ],
)
def test_every_error_has_one_shape(
    client: TestClient, request_args: tuple[Any, ...], status: int, message: str
) -> None:
    seed(client, {})
    method, url, *rest = request_args
    response = client.request(method, url, **(rest[0] if rest else {}))
    assert_error(response, status, message)


MISSING_CASES = [(method, path) for method, path in HTTP_CASES if "{run_id}" in path]


@pytest.mark.parametrize(("method", "path"), MISSING_CASES)
def test_every_route_of_a_missing_run_is_404_run_not_found(
    client: TestClient, method: str, path: str
) -> None:
    url, kwargs = HTTP_CASES[(method, path)]
    seed(client, {})
    assert client.delete("/api/runs/1").status_code == 204
    assert_error(client.request(method, url, **kwargs), 404, "Run not found")


@pytest.mark.parametrize(
    ("method", "path"), [case for case in MISSING_CASES if "{snapshot_id}" in case[1]])
def test_every_route_of_a_missing_snapshot_is_404_snapshot_not_found(
    client: TestClient, method: str, path: str
) -> None:
    url, kwargs = HTTP_CASES[(method, path)]
    seed(client, {})
    assert client.delete("/api/runs/1/snapshots/1").status_code == 204
    assert_error(client.request(method, url, **kwargs), 404, "Snapshot not found")


def test_unauthorized_has_the_shape(token_client: TestClient) -> None:
    assert_error(token_client.get("/api/runs"), 401, "Invalid or missing token")


def test_server_error_has_the_shape(app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(crud, "list_runs", broken)  # nothing real fails on demand here
    with TestClient(app, raise_server_exceptions=False) as client:
        assert_error(client.get("/api/runs"), 500, "Internal server error")


def test_openapi_lists_every_route_and_the_ingest_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for method, path in HTTP_CASES:
        assert method.lower() in schema["paths"][path]
    body = schema["paths"]["/api/runs/{run_id}/metrics"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MetricBatch"
    }
    assert "points" in schema["components"]["schemas"]["MetricBatch"]["properties"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/api/runs/..",
        "/api/runs/%2e%2e",
        "/api/runs/..%2f..%2fetc",
        "/api/runs/%2Fetc%2Fpasswd",
        "/api/runs/1/snapshots/%2e%2e",
        "/api/runs/1/snapshots/%2e%2e%2f1/file",
        "/api/runs/1/snapshots/-1/file",
        "/api/runs/1/snapshots/1%2F..%2F..%2Femaboard.db/file",
        "/api/runs/..%5c..%5cwindows/keys",
        "/api/runs/1e3",
        "/api/runs/1/snapshots/0x1",
    ],
)
def test_traversal_attempts_never_reach_a_file(client: TestClient, url: str) -> None:
    seed(client, {})
    response = client.get(url)
    assert response.status_code in {404, 405, 422}, response.text
    assert set(response.json()) == {"error"}
    assert b"SQLite" not in response.content and b"root:" not in response.content


def test_absolute_and_dotted_paths_do_not_escape_the_static_root(client: TestClient) -> None:
    for url in (
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/..%2fpyproject.toml",
        "//etc/passwd",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert b"[project]" not in response.content and b"root:" not in response.content


@pytest.mark.parametrize(
    ("method", "path"), [case for case in HTTP_CASES if case[0] in {"POST", "PATCH"}]
)
def test_no_body_is_read_without_the_token(tmp_path: Path, method: str, path: str) -> None:
    # FastAPI reads (and for multipart, spools) a body before it runs route dependencies:
    # the token must be checked before that, or anyone could make the server take in
    # max_upload_bytes per request.
    app = create_app(Settings(data_dir=tmp_path / "d", allowed_hosts=HOSTS, token=TOKEN))
    url = HTTP_CASES[(method, path)][0]
    received: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.append({})
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": url, "raw_path": url.encode(),
             "root_path": "", "query_string": b"token=wrong", "server": ("test", 80),
             "client": ("test", 1), "app": app,
             "headers": [(b"host", b"localhost"),
                         (b"content-type", b"multipart/form-data; boundary=x"),
                         (b"authorization", b"Bearer wrong")]}
    asyncio.run(app(scope, receive, send))
    assert received == []
    assert sent[0]["status"] == 401
    assert json.loads(sent[1]["body"]) == {
        "error": {"status": 401, "message": "Invalid or missing token"}}


def test_unknown_api_paths_need_the_token_too(token_client: TestClient) -> None:
    assert_error(token_client.get("/api/no/such/route"), 401, "Invalid or missing token")
    assert_error(token_client.get("/api/health/x"), 401, "Invalid or missing token")
    response = token_client.get("/api/no/such/route", params={"token": TOKEN})
    assert_error(response, 404, "Not Found")


TOO_BIG = str(2**63)  # one past the largest step a database integer holds
TOO_BIG_ID = str(2**31)  # one past the largest id (PostgreSQL's integer columns)


@pytest.mark.parametrize(("method", "path"), [c for c in HTTP_CASES if "{run_id}" in c[1]])
@pytest.mark.parametrize(("run_id", "snapshot_id"),
                         [(TOO_BIG_ID, "1"), ("1", TOO_BIG_ID), ("-1", "1")])
def test_out_of_range_ids_are_422_not_a_database_error(
    client: TestClient, method: str, path: str, run_id: str, snapshot_id: str
) -> None:
    seed(client, {})
    url = path.replace("{run_id}", run_id).replace("{snapshot_id}", snapshot_id)
    kwargs = HTTP_CASES[(method, path)][1]
    response = client.request(method, url, **kwargs)
    if "{snapshot_id}" not in path and snapshot_id != "1":
        assert response.status_code in OK, response.text  # the snapshot id is not in this url
        return
    name = "run_id" if run_id != "1" else "snapshot_id"
    bound = ("less than or equal to 2147483647" if TOO_BIG_ID in url
             else "greater than or equal to 0")
    assert_error(response, 422, f"Invalid path parameter {name!r}: Input should be {bound}")


@both_databases
@pytest.mark.parametrize("path", ["/api/runs/{id}", "/api/runs/{id}/keys",
                                  "/api/runs/1/snapshots/{id}"])
def test_the_largest_id_is_run_not_found_on_both_databases(client: TestClient, path: str) -> None:
    seed(client, {})
    response = client.get(path.format(id=2**31 - 1))
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("param", ["min_step", "max_step"])
def test_out_of_range_steps_are_422(client: TestClient, param: str) -> None:
    seed(client, {})
    client.post("/api/runs/1/metrics", json={"points": [{"key": "a", "step": 1, "value": 1}]})
    response = client.get("/api/runs/1/metrics", params={param: TOO_BIG})
    assert_error(response, 422, f"Invalid query parameter {param!r}: "
                                "Input should be less than or equal to 9223372036854775807")


def test_out_of_range_websocket_run_id_is_refused(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect(
        f"/ws/runs/{TOO_BIG_ID}"
    ) as ws:
        ws.receive_json()
    assert info.value.code == WS_4422_INVALID_REQUEST
    assert info.value.reason == (
        f"Invalid path parameter 'run_id': Input should be less than or equal to {MAX_ROW_ID}")

"""Docs and code agree (issue 14, item 5), checked against a real server with a token:
OPTIONS, the spelling of ids, the open routes, the security scheme in ``/openapi.json``.

Before: ``OPTIONS`` on any path gave 405 ``Allow: GET, HEAD`` (the static files' answer),
run ids ``1.0``, ``+1``, ``%201`` and ``1_0`` were accepted, README said every route needs
the token, and ``/openapi.json`` declared no security scheme.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emaboard_server.local_server import LocalServer
from tests.backend.conftest import TOKEN, assert_error

REPO = Path(__file__).resolve().parents[3]
INT_MESSAGE = "Input should be a valid integer, unable to parse string as an integer"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(tmp_path_factory.mktemp("contract") / "data", token=TOKEN) as proc:
        yield proc


@pytest.fixture(scope="module")
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
        client.post("/api/runs", json={"project": "p", "name": "r"}).raise_for_status()
        yield client


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/api/runs", "GET, POST, OPTIONS"),
        ("/api/runs/1", "DELETE, GET, PATCH, OPTIONS"),
        ("/api/runs/1/metrics", "GET, POST, OPTIONS"),
        ("/api/runs/1/snapshots/best", "GET, OPTIONS"),
        ("/api/runs/1/snapshots/7", "DELETE, GET, OPTIONS"),
        ("/api/health", "GET, OPTIONS"),
        ("/", "GET, HEAD, OPTIONS"),
        ("/run.html", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_lists_the_methods_of_the_path(http: httpx.Client, path: str, allow: str) -> None:
    response = http.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow
    assert not any(name.startswith("access-control-") for name in response.headers)  # no CORS


def test_options_on_an_unknown_api_path_is_404(http: httpx.Client) -> None:
    assert_error(http.options("/api/no/such"), 404, "Not Found")


def test_a_cross_site_preflight_gets_no_cors_grant(http: httpx.Client) -> None:
    response = http.options("/api/runs", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("spelling", ["1.0", "+1", "%201", "1_0", "1%20", "0x1", "%C2%B9"])
def test_an_id_has_one_spelling(http: httpx.Client, spelling: str) -> None:
    assert_error(http.get(f"/api/runs/{spelling}"), 422,
                 f"Invalid path parameter 'run_id': {INT_MESSAGE}")
    assert_error(http.get(f"/api/runs/1/snapshots/{spelling}"), 422,
                 f"Invalid path parameter 'snapshot_id': {INT_MESSAGE}")


@pytest.mark.parametrize("query", ["min_step=1.0", "max_step=+5", "max_points=1e3"])
def test_integer_query_parameters_are_digits(http: httpx.Client, query: str) -> None:
    name = query.split("=")[0]
    assert_error(http.get(f"/api/runs/1/metrics?{query}"), 422,
                 f"Invalid query parameter {name!r}: {INT_MESSAGE}")


def test_plain_digits_still_work(http: httpx.Client) -> None:
    assert http.get("/api/runs/1").status_code == 200
    assert http.get("/api/runs/01").json()["id"] == 1
    assert http.get("/api/runs/1/metrics?min_step=0&max_points=10").status_code == 200


OPEN = ["/", "/run.html", "/docs", "/redoc", "/openapi.json", "/api/health",
        "/vendor/plotly.min.js"]


@pytest.mark.parametrize("path", OPEN)
def test_the_documented_open_routes_need_no_token(server: LocalServer, path: str) -> None:
    assert httpx.get(server.url + path, timeout=30).status_code == 200
    assert httpx.get(server.url + "/api/runs", timeout=30).status_code == 401


def test_readme_and_api_md_name_the_open_routes() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    api = " ".join((REPO / "docs" / "api.md").read_text().split())
    sentence = re.search(r"with `EMABOARD_TOKEN` set requires[^.]*\.[^.]*\.", readme)
    assert sentence is not None
    for name in ("/api/health", "/docs", "/redoc", "/openapi.json", "dashboard"):
        assert name in sentence.group(0), name
        assert name in api, name


def test_openapi_declares_the_token(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {"type": "http", "scheme": "bearer",
                                      "description": schemes["bearerToken"]["description"]}
    assert schemes["queryToken"]["in"] == "query" and schemes["queryToken"]["name"] == "token"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path == "/api/health":
                assert "security" not in operation and "401" not in operation["responses"]
            else:  # this server has a token: no anonymous alternative
                assert operation["security"] == [{"bearerToken": []}, {"queryToken": []}], path
                error = operation["responses"]["401"]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorResponse"}, (path, method)
            assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"} or path == "/api/health"

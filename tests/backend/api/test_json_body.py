"""Bad JSON never answers 500 and always answers 422 in the one error shape (issue 14,
items 4 and 5), against a real server.

Before the fix: a config, summary or snapshot metadata nested 255-300 levels deep gave 500
("Maximum serialization depth exceeded"), deeper ones reset the connection, a safetensors
header of 100,000 nested ``[`` gave 500 (RecursionError), and malformed or non-UTF-8 JSON on
``POST /api/runs`` and ``PATCH`` gave 400 "There was an error parsing the body".
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ema_core.wire import MAX_JSON_DEPTH, json_depth
from emaboard_server.app.api.json_body import parse_json
from emaboard_server.local_server import LocalServer
from tests.backend.conftest import assert_error
from tests.backend.utils import safetensors_bytes

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(tmp_path_factory.mktemp("json") / "data") as proc:
        yield proc


@pytest.fixture
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def run_id(http: httpx.Client, request: pytest.FixtureRequest) -> int:
    return int(http.post("/api/runs", json={"project": "j", "name": request.node.name})
               .json()["id"])


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "Invalid JSON body: Expecting property name enclosed in double quotes "
               "at line 1 column 2"),
        (b'{"project": "p", "name": "\xff"}',
         "Invalid JSON body: not UTF-8 (byte 26: invalid start byte)"),
        (b'{"project": "p",\n "name": }', "Invalid JSON body: Expecting value at line 2 column 10"),
        (nested(100_000).encode(), "Invalid JSON body: nested deeper than 64 levels"),
        (nested(65).encode(), "Invalid JSON body: nested deeper than 64 levels"),
        # found by scripts/adversarial_pass.py (was 400 'There was an error parsing the body')
        (b'{"summary": {"x": ' + b"9" * 5000 + b"}}",
         "Invalid JSON body: a number has more than 4300 digits"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_broken_json_is_422_with_the_reason(
    http: httpx.Client, run_id: int, method: str, body: bytes, message: str
) -> None:
    url = "/api/runs" if method == "POST" else f"/api/runs/{run_id}"
    error = assert_error(http.request(method, url, content=body, headers=JSON), 422, message)
    assert "details" not in error


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 40, 255, 300, 900, 5000])
def test_config_and_summary_nested_too_deeply_are_422(
    http: httpx.Client, run_id: int, depth: int
) -> None:
    inner = nested(depth - 1)  # the object itself is one level
    config = f'{{"project": "j", "name": "deep{depth}", "config": {{"a": {inner}}}}}'
    summary = f'{{"summary": {{"a": {inner}}}}}'
    for method, url, body, field in (("POST", "/api/runs", config, "config"),
                                     ("PATCH", f"/api/runs/{run_id}", summary, "summary")):
        response = http.request(method, url, content=body.encode(), headers=JSON)
        assert response.status_code == 422, response.text
        message = response.json()["error"]["message"]
        if depth < 2 * MAX_JSON_DEPTH:
            assert message == (f"Invalid field {field!r}: Value error, nested deeper than "
                               f"{MAX_JSON_DEPTH} levels")
        else:
            assert message == "Invalid JSON body: nested deeper than 64 levels"
    assert http.get("/api/health").status_code == 200


def test_config_at_the_depth_limit_is_stored(http: httpx.Client) -> None:
    value: Any = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        value = [value]
    response = http.post("/api/runs", json={"project": "j", "name": "at-limit",
                                            "config": {"a": value}})
    assert response.status_code == 201, response.text
    assert response.json()["config"] == {"a": value}


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 100_000])
def test_snapshot_metadata_nested_too_deeply_is_422(
    http: httpx.Client, run_id: int, depth: int
) -> None:
    metadata = '{"a": ' + nested(depth - 1) + "}"
    response = http.post(f"/api/runs/{run_id}/snapshots",
                         data={"averager": "swa", "step": "1", "metadata": metadata},
                         files={"file": ("f", safetensors_bytes())})
    if len(metadata) > 1 << 20:  # over the multipart parser's field cap: refused first
        assert_error(response, 400, "Part exceeded maximum size of 1024KB.")
    else:
        assert_error(response, 422, f"Invalid field 'metadata': nested deeper than "
                     f"{MAX_JSON_DEPTH} levels")
    assert http.get(f"/api/runs/{run_id}/snapshots").json() == []


@pytest.mark.parametrize("header", [b"[" * 100_000, b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_safetensors_header_nested_deeply_is_400(
    http: httpx.Client, run_id: int, header: bytes
) -> None:
    file = struct.pack("<Q", len(header)) + header
    response = http.post(f"/api/runs/{run_id}/snapshots", data={"averager": "a", "step": "1"},
                         files={"file": ("f", file)})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(
        "File is not a valid safetensors file: header is not")


def test_json_depth_counts_without_recursion() -> None:
    assert json_depth(1) == 0 and json_depth([]) == 1 and json_depth({"a": [1]}) == 2
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert json_depth(deep, limit=10) == 11  # stops counting past the limit
    with pytest.raises(Exception, match="nested deeper than 64 levels"):
        parse_json(json.dumps({"a": [[[]]]}).encode().replace(b"[[[]]]", nested(70).encode()))

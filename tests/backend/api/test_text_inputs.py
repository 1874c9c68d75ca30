"""Inputs that SQLite stores and PostgreSQL refuses (found by running the suite on both).

PostgreSQL's text columns cannot hold NUL (``\\u0000``) and its floats stop at ~1.8e308:
each such input answered 500 there (and a JSON integer above 2**63 answered 500 on SQLite:
"Python int too large to convert to SQLite INTEGER"). Both databases now answer the same:
a 422 naming the field, or the float the integer stands for.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import assert_error
from tests.backend.utils import safetensors_bytes
from tests.utils.databases import both_databases

NUL_MESSAGE = "String should not contain NUL (\\u0000) characters"
JSON = {"content-type": "application/json"}


@both_databases
def test_nul_in_a_metric_key_is_422_naming_the_point(
    client: TestClient, run: dict[str, Any]
) -> None:
    body = ('{"points": [{"key": "a", "step": 1, "value": 1}, '
            '{"key": "b\\u0000", "step": 1, "value": 1}]}')
    response = client.post(f"/api/runs/{run['id']}/metrics", content=body, headers=JSON)
    assert_error(response, 422, f"Invalid point 1 field 'key': {NUL_MESSAGE}")
    assert client.get(f"/api/runs/{run['id']}/keys").json() == []  # nothing of it stored


@both_databases
@pytest.mark.parametrize("field", ["project", "name"])
def test_nul_in_a_run_name_is_422(client: TestClient, field: str) -> None:
    body = {"project": "p", "name": "r", field: "x\u0000y"}
    assert_error(client.post("/api/runs", json=body), 422,
                 f"Invalid field {field!r}: {NUL_MESSAGE}")


@both_databases
@pytest.mark.parametrize(("path", "params", "name"), [
    ("/api/runs", {"project": "\u0000"}, "project"),
    ("/api/runs/{id}/metrics", {"keys": ["a", "\u0000"]}, "keys"),
    ("/api/runs/{id}/metrics", {"prefix": "a\u0000"}, "prefix"),
    ("/api/runs/{id}/snapshots", {"averager": "\u0000"}, "averager"),
    ("/api/runs/{id}/snapshots/best", {"averager": "\u0000"}, "averager"),
    ("/api/runs/{id}/snapshots/best", {"metric": "\u0000"}, "metric"),
])
def test_nul_in_a_query_parameter_is_422(
    client: TestClient, run: dict[str, Any], path: str, params: dict[str, Any], name: str
) -> None:
    response = client.get(path.format(id=run["id"]), params=params)
    assert_error(response, 422, f"Invalid query parameter {name!r}: {NUL_MESSAGE}")


@both_databases
@pytest.mark.parametrize("field", ["averager", "metric"])
def test_nul_in_a_snapshot_form_field_is_422(
    client: TestClient, run: dict[str, Any], field: str
) -> None:
    data = {"averager": "swa", "step": "1", "metric": "loss", field: "a\u0000"}
    response = client.post(f"/api/runs/{run['id']}/snapshots", data=data,
                           files={"file": ("s", safetensors_bytes())})
    assert_error(response, 422, f"Invalid field {field!r}: {NUL_MESSAGE}")


@both_databases
def test_integer_values_are_stored_as_floats_and_beyond_float_range_as_infinity(
    client: TestClient, run: dict[str, Any]
) -> None:
    url = f"/api/runs/{run['id']}/metrics"
    for step, digits in ((1, 30), (2, 400)):
        body = f'{{"points": [{{"key": "a", "step": {step}, "value": -1{"0" * digits}}}]}}'
        assert client.post(url, content=body, headers=JSON).json()["inserted"] == 1
    assert client.get(url).json()["series"]["a"]["values"] == [-1e30, "-Infinity"]

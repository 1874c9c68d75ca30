"""Fixtures for the server tests: an app with its own SQLite file, a TestClient, a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from emaboard_server.app.core.config import Settings
from emaboard_server.app.main import create_app

TOKEN = "s3cret-token"
HOSTS = ["localhost", "testserver"]  # TestClient sends Host: testserver


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings with a fresh data_dir under ``tmp_path`` (holding the SQLite file, unless
    the test is parametrised over PostgreSQL: then a new database of the cluster), no token."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url, token=None,
                    allowed_hosts=HOSTS)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def run(client: TestClient) -> dict[str, Any]:
    """A fresh run ``demo/run-1``."""
    response = client.post("/api/runs", json={"project": "demo", "name": "run-1"})
    assert response.status_code == 201
    return response.json()


def points(key: str, steps: range, value: float = 1.0) -> list[dict[str, Any]]:
    """Wire-form points of one key, one per step, all with ``value``."""
    return [{"key": key, "step": step, "value": value} for step in steps]


def assert_error(response: Any, status: int, message: str) -> dict[str, Any]:
    """Check the one error shape, the status and the exact message; return the error body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["status"] == status
    assert error["message"] == message
    assert set(error) <= {"status", "message", "details"}
    return error

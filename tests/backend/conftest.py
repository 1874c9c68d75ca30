"""Fixtures for the server tests: an app with its own SQLite file, a TestClient, a run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from emaboard_server.app.core.config import Settings
from emaboard_server.app.core.db import Database, upgrade_database
from emaboard_server.app.main import create_app, create_state

TOKEN = "s3cret-token"
HOSTS = ["localhost", "testserver"]  # TestClient sends Host: testserver


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file at the schema's head, migrated once for the session: each test starts
    from a copy (the app's own ``alembic upgrade head`` then finds nothing to do)."""
    path = tmp_path_factory.mktemp("migrated") / "emaboard.db"
    db = Database(f"sqlite:///{path}")
    upgrade_database(db.engine, path.parent)
    db.dispose()
    return path


@pytest.fixture
def settings(tmp_path: Path, database_url: str, migrated_sqlite: Path) -> Settings:
    """Settings with a fresh data_dir under ``tmp_path`` (holding the SQLite file, unless
    the test is parametrised over PostgreSQL: then a new database of the cluster), no token."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, token=None,
                        allowed_hosts=HOSTS)
    if not database_url:
        settings.data_dir.mkdir(parents=True)
        shutil.copyfile(migrated_sqlite, settings.data_dir / "emaboard.db")
    return settings


@pytest.fixture(scope="session")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """One app for the session, built with the tests' default settings: building its routes
    and middleware takes longer than most tests run."""
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("default-app"),
                               database_url="", token=None, allowed_hosts=HOSTS))


@pytest.fixture
def app(settings: Settings, default_app: FastAPI) -> FastAPI:
    """The session's app serving this test's own database and data_dir (a fresh state: only
    the paths differ from the settings it was built with). Tests with other settings call
    ``create_app`` themselves."""
    default_app.state.emaboard = create_state(settings)
    return default_app


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

"""``POST /api/runs`` with a client-generated ``creation_id``: a retried create (its reply lost
after the commit) answers the run it created, never ``name-2``."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from emaboard_server.app import writes
from emaboard_server.app.core.config import Settings
from tests.backend.conftest import assert_error
from tests.utils.databases import both_databases


def _create(client: TestClient, name: str, creation_id: str | None, **fields: Any) -> Any:
    body = {"project": "p", "name": name, "resume": "never", **fields}
    if creation_id is not None:
        body["creation_id"] = creation_id
    return client.post("/api/runs", json=body)


def _names(client: TestClient, project: str = "p") -> list[str]:
    return sorted(run["name"] for run in client.get("/api/runs",
                                                    params={"project": project}).json())


@both_databases
def test_a_retried_create_answers_the_run_it_created(client: TestClient) -> None:
    creation_id = uuid.uuid4().hex
    first = _create(client, "r", creation_id, config={"lr": 0.1})
    assert first.status_code == 201 and first.json()["name"] == "r"
    again = _create(client, "r", creation_id, config={"lr": 0.1})
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["name"]) == (first.json()["id"], "r")
    assert again.json()["config"] == {"lr": 0.1}
    assert _names(client) == ["r"]
    run_id = first.json()["id"]
    assert first.json()["creation_id"] == creation_id
    assert client.get(f"/api/runs/{run_id}").json()["creation_id"] == creation_id
    without = _create(client, "s", None).json()
    assert without["creation_id"] is None
    assert {run["name"]: run["creation_id"] for run in client.get("/api/runs").json()} == {
        "r": creation_id, "s": None}


@both_databases
def test_a_retry_after_a_rename_answers_the_renamed_run(client: TestClient) -> None:
    _create(client, "r", None)
    creation_id = uuid.uuid4().hex
    renamed = _create(client, "r", creation_id)
    assert (renamed.status_code, renamed.json()["name"]) == (201, "r-2")
    for resume in ("never", "allow", "must"):  # whatever the retry says, the run is its own
        again = _create(client, "r", creation_id, resume=resume)
        assert again.status_code == 200
        assert (again.json()["id"], again.json()["name"]) == (renamed.json()["id"], "r-2")
    assert _names(client) == ["r", "r-2"]


@both_databases
def test_another_creation_id_with_the_same_name_still_gets_a_free_name(
    client: TestClient,
) -> None:
    first = _create(client, "r", uuid.uuid4().hex)
    second = _create(client, "r", uuid.uuid4().hex)
    assert (first.status_code, first.json()["name"]) == (201, "r")
    assert (second.status_code, second.json()["name"]) == (201, "r-2")
    resumed = _create(client, "r", uuid.uuid4().hex, resume="allow")  # resume stays as it was
    assert (resumed.status_code, resumed.json()["id"]) == (200, first.json()["id"])
    assert _names(client) == ["r", "r-2"]


@both_databases
def test_a_creation_id_is_unique_per_project(client: TestClient) -> None:
    creation_id = uuid.uuid4().hex
    a = client.post("/api/runs", json={"project": "a", "name": "r", "creation_id": creation_id})
    b = client.post("/api/runs", json={"project": "b", "name": "r", "creation_id": creation_id})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


@both_databases
def test_a_deleted_run_s_creation_id_creates_it_again(client: TestClient) -> None:
    creation_id = uuid.uuid4().hex
    first = _create(client, "r", creation_id).json()
    assert client.delete(f"/api/runs/{first['id']}").status_code == 204
    again = _create(client, "r", creation_id)
    assert again.status_code == 201 and again.json()["id"] != first["id"]
    assert _create(client, "r", creation_id).json()["id"] == again.json()["id"]


def _wait_for_a_blocked_lock(engine: Engine, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    with engine.connect() as connection:
        while not connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar():
            assert time.monotonic() < deadline, "the retry never waited for the first create"
            time.sleep(0.01)


@pytest.mark.parametrize("database", ["postgres"])
def test_a_retry_racing_the_create_it_repeats_answers_that_run(
    client: TestClient, app: FastAPI, settings: Settings
) -> None:
    # The client's timeout fired while a loaded server was still creating the run: the retry
    # reaches another server process before the first create commits. Its INSERT waits on the
    # uncommitted row, fails on the unique index once the first commits, and is retried.
    creation_id = uuid.uuid4().hex
    answers: list[tuple[dict[str, Any], bool]] = []
    engine = create_engine(settings.resolved_database_url())
    with engine.connect() as first:
        transaction = first.begin()
        first.execute(text(
            "INSERT INTO run (project, name, config, status, created_at, last_seen_at, summary, "
            "creation_id) VALUES ('p', 'r', '{}', 'running', 0, 0, '{}', :creation_id)"),
            {"creation_id": creation_id})
        retry = threading.Thread(target=lambda: answers.append(writes.create_or_resume_run(
            app.state.emaboard, project="p", name="r", config=None, resume="never",
            creation_id=creation_id)))
        retry.start()
        _wait_for_a_blocked_lock(engine)
        transaction.commit()
    retry.join(timeout=10)
    engine.dispose()
    ((run, created),) = answers
    assert (run["name"], created) == ("r", False)
    assert _names(client) == ["r"]


_RULE = "expected 1 to 64 ASCII letters, digits, '-' or '_', e.g. uuid.uuid4().hex"


@pytest.mark.parametrize(("creation_id", "message"), [
    ("a b", f"Value error, Invalid creation_id 'a b': {_RULE}"),
    ("", f"Value error, Invalid creation_id '': {_RULE}"),
    ("x" * 65, f"Value error, Invalid creation_id {'x' * 64!r}... (65 characters): {_RULE}"),
    ("y" * 10_000, f"Value error, Invalid creation_id {'y' * 64!r}... (10000 characters): "
                   f"{_RULE}"),
    ("é", f"Value error, Invalid creation_id 'é': {_RULE}"),
    ("a\x00", f"Value error, Invalid creation_id 'a\\x00': {_RULE}"),
    ("abc\n", f"Value error, Invalid creation_id 'abc\\n': {_RULE}"),
    (7, "Input should be a valid string"),
])
def test_an_invalid_creation_id_is_422_naming_the_value(
    client: TestClient, creation_id: Any, message: str
) -> None:
    response = client.post("/api/runs", json={"project": "p", "name": "r",
                                              "creation_id": creation_id})
    assert_error(response, 422, f"Invalid field 'creation_id': {message}")
    assert client.get("/api/runs").json() == []


def test_the_longest_creation_id_is_accepted(client: TestClient) -> None:
    creation_id = "A-z_9" * 12 + "abcd"
    response = _create(client, "r", creation_id)
    assert response.status_code == 201
    assert _create(client, "r", creation_id).json()["id"] == response.json()["id"]

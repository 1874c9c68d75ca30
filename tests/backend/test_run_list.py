"""The run-list ticker on its own: one tick, no sleeping, a real SQLite database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from emaboard_server.app import writes
from emaboard_server.app.core.config import Settings
from emaboard_server.app.core.db import Database, upgrade_database
from emaboard_server.app.fanout import Fanout
from emaboard_server.app.hub import Hub
from emaboard_server.app.run_list import RunListTicker
from emaboard_server.app.state import AppState


@pytest.fixture
def state(tmp_path: Path) -> Iterator[AppState]:
    settings = Settings(data_dir=tmp_path, database_url="", token=None)
    db = Database(settings.resolved_database_url())
    upgrade_database(db.engine)
    hub = Hub()
    yield AppState(settings=settings, db=db, hub=hub, fanout=Fanout(hub, db, enabled=False))
    db.dispose()


def queued(state: AppState, project: str | None = None) -> list[dict]:
    """Runs one tick with a ``/ws/runs`` subscriber; returns the messages it got."""

    async def scenario() -> list[dict]:
        async def send(text: str) -> None:
            raise AssertionError("the sender task is never started here")

        sub = state.hub.subscribe("runs", send, project=project)
        await RunListTicker(state).tick()
        messages = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
        await state.hub.unsubscribe(sub)
        return [json.loads(m) for m in messages if isinstance(m, str)]

    return asyncio.run(scenario())


def test_a_tick_pushes_each_touched_run_once_and_forgets_it(state: AppState) -> None:
    run, _ = writes.create_or_resume_run(state, project="p", name="r", config=None)
    deleted, _ = writes.create_or_resume_run(state, project="p", name="gone", config=None)
    writes.delete_run(state, run_id=deleted["id"])
    state.touched_runs |= {run["id"], deleted["id"]}  # a deleted run is skipped
    assert queued(state) == [{"type": "run", "run": run}]
    assert state.touched_runs == set()
    assert queued(state) == []  # nothing touched since


def test_a_tick_without_listeners_only_forgets(state: AppState) -> None:
    run, _ = writes.create_or_resume_run(state, project="p", name="r", config=None)
    state.touched_runs.add(run["id"])
    asyncio.run(RunListTicker(state).tick())
    assert state.touched_runs == set()


def test_a_tick_pushes_to_listeners_of_the_runs_project_only(state: AppState) -> None:
    run, _ = writes.create_or_resume_run(state, project="p", name="r", config=None)
    state.touched_runs.add(run["id"])
    assert queued(state, project="other") == []

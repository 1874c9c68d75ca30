"""Runs: create-or-resume, list, read, update status/summary, delete."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from emaboard_server.app import crud
from emaboard_server.app.api.deps import RUN_NOT_FOUND, RunId, SessionDep, StateDep, not_found
from emaboard_server.app.api.json_body import JsonRoute
from emaboard_server.app.schemas import (
    ErrorResponse,
    ObjectTooLarge,
    RunCreate,
    RunOut,
    RunUpdate,
    check_object_size,
)
from emaboard_server.app.serialize import runs_dicts
from emaboard_server.app.state import AppState

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["runs"], route_class=JsonRoute)
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}


def announce_run(state: AppState, run: dict[str, Any]) -> None:
    """Push a run's new form to its own websocket topic and to the run list."""
    state.hub.publish(run["id"], {"type": "run", "run": run})
    state.hub.publish("runs", {"type": "run", "run": run}, project=run["project"])


@router.post("", response_model=RunOut, status_code=201,
             responses={200: {"model": RunOut, "description": "Existing run resumed"}})
async def create_run(body: RunCreate, state: StateDep, response: Response) -> dict[str, Any]:
    """Create the run (project, name), or resume it (201 new, 200 existing)."""

    limit = state.settings.max_object_bytes
    if body.config is not None:
        _check_size("config", body.config, limit)

    def write() -> tuple[dict[str, Any], bool]:
        with state.db.writing() as session:
            run, created = crud.get_or_create_run(
                session, project=body.project, name=body.name, config=body.config
            )
            if body.config:  # a resumed run's config is merged: the result must fit too
                _check_size("config", run.config, limit, merged_with="the stored config")
            return runs_dicts(session, [run])[0], created

    def write_once_more_on_a_race() -> tuple[dict[str, Any], bool]:
        try:
            return write()
        except IntegrityError:  # another server process created (project, name) meanwhile
            return write()

    run, created = await run_in_threadpool(write_once_more_on_a_race)
    if not created:
        response.status_code = status.HTTP_200_OK
    announce_run(state, run)
    return run


@router.get("", response_model=list[RunOut])
def read_runs(session: SessionDep, project: str | None = None) -> list[dict[str, Any]]:
    """List runs, newest first (optionally of one project)."""
    return runs_dicts(session, crud.list_runs(session, project=project))


@router.get("/{run_id}", response_model=RunOut, responses=ERRORS)
def read_run(run_id: RunId, session: SessionDep) -> dict[str, Any]:
    """Read one run."""
    run = crud.get_run(session, run_id=run_id)
    if run is None:
        raise not_found(RUN_NOT_FOUND)
    return runs_dicts(session, [run])[0]


@router.patch("/{run_id}", response_model=RunOut, responses=ERRORS)
async def update_run(run_id: RunId, body: RunUpdate, state: StateDep) -> dict[str, Any]:
    """Set a run's status (running, finished, crashed) and/or merge into its summary."""

    limit = state.settings.max_object_bytes
    if body.summary is not None:
        _check_size("summary", body.summary, limit)

    def write() -> dict[str, Any] | None:
        with state.db.writing() as session:
            run = crud.get_run(session, run_id=run_id)
            if run is None:
                return None
            crud.update_run(session, run=run, status=body.status, summary=body.summary)
            if body.summary:
                _check_size("summary", run.summary, limit, merged_with="the stored summary")
            return runs_dicts(session, [run])[0]

    run = await run_in_threadpool(write)
    if run is None:
        raise not_found(RUN_NOT_FOUND)
    announce_run(state, run)
    return run


@router.delete("/{run_id}", status_code=204, responses=ERRORS)
async def delete_run(run_id: RunId, state: StateDep) -> Response:
    """Delete a run, its points and its snapshots (rows and files)."""

    def write() -> dict[str, Any] | None:
        with state.db.writing() as session:
            run = crud.get_run(session, run_id=run_id)
            if run is None:
                return None
            project = run.project
            paths = crud.delete_run(session, run=run)
        for path in paths:
            (state.settings.data_dir / path).unlink(missing_ok=True)
        _remove_empty_dir(state.settings.snapshot_dir / str(run_id))
        return {"project": project}

    deleted = await run_in_threadpool(write)
    if deleted is None:
        raise not_found(RUN_NOT_FOUND)
    state.hub.publish(run_id, {"type": "run_deleted", "id": run_id})
    state.hub.publish("runs", {"type": "run_deleted", "id": run_id}, project=deleted["project"])
    return Response(status_code=204)


def _check_size(
    field: str, value: dict[str, Any], limit: int, *, merged_with: str | None = None
) -> None:
    """A 422 naming the field when ``value`` is over ``max_object_bytes`` as JSON (raised
    inside a write transaction, it also rolls the merge back)."""
    try:
        check_object_size(field, value, limit, merged_with=merged_with)
    except ObjectTooLarge as exc:
        raise HTTPException(422, str(exc)) from None


def _remove_empty_dir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # absent or not empty

"""Runs: create-or-resume, list, read, update status/summary, delete."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from starlette.concurrency import run_in_threadpool

from emaboard_server.app import crud, writes
from emaboard_server.app.api.deps import RunDep, RunId, SessionDep, StateDep
from emaboard_server.app.api.json_body import JsonRoute
from emaboard_server.app.schemas import (
    ErrorResponse,
    NoNul,
    RunCreate,
    RunOut,
    RunStatus,
    RunUpdate,
)
from emaboard_server.app.serialize import runs_dicts
from emaboard_server.app.state import AppState

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["runs"], route_class=JsonRoute)
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}


async def announce_run(state: AppState, run: dict[str, Any]) -> None:
    """Push a run's new form to its own websocket topic and to the run list."""
    await state.fanout.publish(run["id"], {"type": "run", "run": run})
    await state.fanout.publish("runs", {"type": "run", "run": run}, project=run["project"])


@router.post("", response_model=RunOut, status_code=201,
             responses={200: {"model": RunOut, "description": "Existing run resumed"},
                        404: {"model": ErrorResponse}})
async def create_run(body: RunCreate, state: StateDep, response: Response) -> dict[str, Any]:
    """Create the run (project, name) or resume it, as ``resume`` says (201 new, 200 resumed)."""
    run, created = await run_in_threadpool(
        lambda: writes.create_or_resume_run(state, project=body.project, name=body.name,
                                            config=body.config, resume=body.resume,
                                            tags=body.tags, creation_id=body.creation_id))
    if not created:
        response.status_code = status.HTTP_200_OK
    elif run["name"] != body.name:
        logger.info("run %s/%s exists: created %s/%s (resume='never')", body.project,
                    body.name, body.project, run["name"])
    await announce_run(state, run)
    return run


@router.get("", response_model=list[RunOut])
def read_runs(
    session: SessionDep, project: Annotated[str | None, NoNul] = None,
    tag: Annotated[list[str] | None, Query(), NoNul] = None, status: RunStatus | None = None,
    q: Annotated[str | None, Query(max_length=200), NoNul] = None,
) -> list[dict[str, Any]]:
    """List runs, newest first: of one project, with every ``tag``, one status, a name
    containing ``q`` (each optional)."""
    runs = crud.list_runs(session, project=project, tags=tag or (), status=status,
                          name_contains=q)
    return runs_dicts(session, runs)


@router.get("/{run_id}", response_model=RunOut, responses=ERRORS)
def read_run(run: RunDep, session: SessionDep) -> dict[str, Any]:
    """Read one run."""
    return runs_dicts(session, [run])[0]


@router.patch("/{run_id}", response_model=RunOut, responses=ERRORS)
async def update_run(run_id: RunId, body: RunUpdate, state: StateDep) -> dict[str, Any]:
    """Set a run's status (running, finished, crashed), merge into its summary, set its tags."""
    run = await run_in_threadpool(
        lambda: writes.update_run(state, run_id=run_id, status=body.status,
                                  summary=body.summary, tags=body.tags))
    await announce_run(state, run)
    return run


@router.delete("/{run_id}", status_code=204, responses=ERRORS)
async def delete_run(run_id: RunId, state: StateDep) -> Response:
    """Delete a run, its points and its snapshots (rows and files)."""
    project = await run_in_threadpool(lambda: writes.delete_run(state, run_id=run_id))
    await state.fanout.publish(run_id, {"type": "run_deleted", "id": run_id})
    await state.fanout.publish("runs", {"type": "run_deleted", "id": run_id}, project=project)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

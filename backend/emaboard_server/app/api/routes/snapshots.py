"""Snapshots: upload (validated safetensors), list, metadata, download, best, delete."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ema_core.metric_keys import default_mode
from ema_core.wire import MAX_JSON_DEPTH, encode_json, json_depth
from emaboard_server.app import crud, writes
from emaboard_server.app.api.deps import (
    MAX_ID,
    Digits,
    RunDep,
    RunId,
    SessionDep,
    SnapshotId,
    StateDep,
)
from emaboard_server.app.models import Run, Snapshot
from emaboard_server.app.schemas import ErrorResponse, NoNul, SnapshotOut, check_object_size
from emaboard_server.app.serialize import download_name, snapshot_dict
from emaboard_server.app.snapshot_files import stored_file
from emaboard_server.app.state import AppState

router = APIRouter(prefix="/runs/{run_id}/snapshots", tags=["snapshots"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "The safetensors file"},
    404: {"model": ErrorResponse},
}


def _parse_metadata(text: str | None, limit: int) -> dict[str, Any]:
    if not text:
        return {}
    too_deep = HTTPException(
        422, f"Invalid field 'metadata': nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HTTPException(422, f"Invalid field 'metadata': not JSON ({exc})") from exc
    except RecursionError:
        raise too_deep from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    if not isinstance(value, dict):
        raise HTTPException(422, "Invalid field 'metadata': expected a JSON object")
    result: dict[str, Any] = encode_json(value)
    check_object_size("metadata", result, limit)
    return result


@router.post("", response_model=SnapshotOut, status_code=201,
             responses={200: {"model": SnapshotOut, "description": "Already stored (a retry)"},
                        400: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
                        409: {"model": ErrorResponse}, 413: {"model": ErrorResponse}})
async def create_snapshot(
    run_id: RunId,
    state: StateDep,
    response: Response,
    file: Annotated[UploadFile, File(description="A safetensors file")],
    averager: Annotated[str, Form(min_length=1, max_length=200), NoNul],
    step: Annotated[int, Form(ge=0, le=MAX_ID), Digits],
    metric: Annotated[str | None, Form(max_length=200), NoNul] = None,
    value: Annotated[float | None, Form()] = None,
    metadata: Annotated[str | None, Form(description="A JSON object")] = None,
) -> Any:
    """Upload one averager's weights at one step (201); the same file again is 200, another
    file at the same (averager, step) is 409."""
    fields = {"averager": averager, "step": step, "metric": metric, "value": value,
              "meta": _parse_metadata(metadata, state.settings.max_object_bytes)}
    snapshot, created = await run_in_threadpool(
        lambda: writes.create_snapshot(state, run_id=run_id, file=file.file, fields=fields,
                                       filename=file.filename or "upload"))
    if created:
        await state.fanout.publish(run_id, {"type": "snapshot", "snapshot": snapshot})
    else:
        response.status_code = status.HTTP_200_OK
    return snapshot


@router.get("", response_model=list[SnapshotOut], responses=ERRORS)
def read_snapshots(
    run: RunDep, session: SessionDep, averager: Annotated[str | None, NoNul] = None,
    step: Annotated[int | None, Query(ge=0, le=MAX_ID), Digits] = None,
    kind: Literal["snapshot", "posthoc"] | None = None,
) -> Any:
    """List the run's snapshots (optionally of one averager, step and/or kind), by step."""
    found = crud.list_snapshots(session, run_id=run.id, averager=averager, step=step,
                                kind=kind)
    return [snapshot_dict(s) for s in found]


def _file_response(state: AppState, run: Run, snapshot: Snapshot) -> FileResponse:
    return FileResponse(
        stored_file(state.settings.data_dir, snapshot.stored_path),
        media_type="application/octet-stream", filename=download_name(run, snapshot),
        headers={"ETag": f'"{snapshot.sha256}"'},
    )


@router.get("/best", response_class=FileResponse, responses=FILE_RESPONSES)
def read_best_snapshot_file(
    run: RunDep,
    session: SessionDep,
    state: StateDep,
    averager: Annotated[str | None, NoNul] = None,
    metric: Annotated[str | None, NoNul] = None,
    mode: Literal["max", "min"] | None = None,
) -> FileResponse:
    """Download the snapshot with the best value (``mode`` defaults by the metric's name)."""
    snapshot = crud.best_snapshot(session, run_id=run.id, averager=averager, metric=metric,
                                  mode=mode or default_mode(metric))
    return _file_response(state, run, snapshot)


@router.get("/{snapshot_id}", response_model=SnapshotOut, responses=ERRORS)
def read_snapshot(run_id: RunId, snapshot_id: SnapshotId, session: SessionDep) -> Any:
    """Read one snapshot's metadata."""
    return snapshot_dict(crud.require_snapshot(session, run_id=run_id, snapshot_id=snapshot_id))


@router.get("/{snapshot_id}/file", response_class=FileResponse, responses=FILE_RESPONSES)
def read_snapshot_file(
    run_id: RunId, snapshot_id: SnapshotId, session: SessionDep, state: StateDep
) -> FileResponse:
    """Download one snapshot's safetensors file (``ETag`` is its sha256)."""
    snapshot = crud.require_snapshot(session, run_id=run_id, snapshot_id=snapshot_id)
    return _file_response(state, snapshot.run, snapshot)


@router.delete("/{snapshot_id}", status_code=204, responses=ERRORS)
async def delete_snapshot(run_id: RunId, snapshot_id: SnapshotId, state: StateDep) -> Response:
    """Delete a snapshot's row and file."""
    await run_in_threadpool(
        lambda: writes.delete_snapshot(state, run_id=run_id, snapshot_id=snapshot_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Snapshots: upload (validated safetensors), list, metadata, download, best, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile, status
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from ema_core.metric_keys import default_mode
from ema_core.wire import encode_json
from emaboard_server.app import crud
from emaboard_server.app.api.deps import (
    MAX_ID,
    RUN_NOT_FOUND,
    SNAPSHOT_NOT_FOUND,
    Digits,
    RunId,
    SessionDep,
    SnapshotId,
    StateDep,
    not_found,
)
from emaboard_server.app.models import Run, Snapshot
from emaboard_server.app.schemas import (
    MAX_JSON_DEPTH,
    ErrorResponse,
    ObjectTooLarge,
    SnapshotOut,
    check_object_size,
    json_depth,
)
from emaboard_server.app.serialize import download_name, snapshot_dict
from emaboard_server.app.snapshot_files import InvalidSnapshot, SnapshotTooLarge, store_upload
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
    _check_size(result, limit, merged_with=None)
    return result


def _check_size(metadata: dict[str, Any], limit: int, *, merged_with: str | None) -> None:
    try:
        check_object_size("metadata", metadata, limit, merged_with=merged_with)
    except ObjectTooLarge as exc:
        raise HTTPException(422, str(exc)) from None


def _store(state: AppState, run_id: int, upload: UploadFile, fields: dict[str, Any]) -> Any:
    with state.db.reading() as session:
        if session.get(Run, run_id) is None:
            raise not_found(RUN_NOT_FOUND)
    max_bytes = state.settings.max_upload_bytes
    try:
        path, sha256, size, file_meta = store_upload(
            upload.file, data_dir=state.settings.data_dir, run_id=run_id, max_bytes=max_bytes
        )
    except InvalidSnapshot as exc:
        raise HTTPException(400, f"File is not a valid safetensors file: {exc}") from exc
    except SnapshotTooLarge as exc:
        raise HTTPException(413, f"Upload too large: {exc}") from exc
    fields = {**fields, "meta": {**file_meta, **fields["meta"]}}
    try:
        _check_size(fields["meta"], state.settings.max_object_bytes,
                    merged_with="the file's __metadata__")
        with state.db.writing() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise not_found(RUN_NOT_FOUND)
            snapshot = crud.create_snapshot(session, run=run, fields={
                **fields, "sha256": sha256, "size_bytes": size, "stored_path": path})
            return snapshot_dict(snapshot)
    except BaseException:
        (state.settings.data_dir / path).unlink(missing_ok=True)
        raise


@router.post("", response_model=SnapshotOut, status_code=201,
             responses={400: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
                        413: {"model": ErrorResponse}})
async def create_snapshot(
    run_id: RunId,
    state: StateDep,
    file: Annotated[UploadFile, File(description="A safetensors file")],
    averager: Annotated[str, Form(min_length=1, max_length=200)],
    step: Annotated[int, Form(ge=0, le=MAX_ID), Digits],
    metric: Annotated[str | None, Form(max_length=200)] = None,
    value: Annotated[float | None, Form()] = None,
    metadata: Annotated[str | None, Form(description="A JSON object")] = None,
) -> Any:
    """Upload one averager's weights (safetensors) with its step and optional metric value."""
    fields = {"averager": averager, "step": step, "metric": metric, "value": value,
              "meta": _parse_metadata(metadata, state.settings.max_object_bytes)}
    snapshot = await run_in_threadpool(_store, state, run_id, file, fields)
    state.hub.publish(run_id, {"type": "snapshot", "snapshot": snapshot})
    return snapshot


@router.get("", response_model=list[SnapshotOut], responses=ERRORS)
def read_snapshots(run_id: RunId, session: SessionDep, averager: str | None = None) -> Any:
    """List the run's snapshots (optionally of one averager), by step."""
    if session.get(Run, run_id) is None:
        raise not_found(RUN_NOT_FOUND)
    found = crud.list_snapshots(session, run_id=run_id, averager=averager)
    return [snapshot_dict(s) for s in found]


def _file_response(state: AppState, run: Run, snapshot: Snapshot) -> FileResponse:
    path = state.settings.data_dir / snapshot.stored_path
    if not path.is_file():
        raise not_found(SNAPSHOT_NOT_FOUND)
    return FileResponse(
        path, media_type="application/octet-stream", filename=download_name(run, snapshot),
        headers={"ETag": f'"{snapshot.sha256}"'},
    )


@router.get("/best", response_class=FileResponse, responses=FILE_RESPONSES)
def read_best_snapshot_file(
    run_id: RunId,
    session: SessionDep,
    state: StateDep,
    averager: str | None = None,
    metric: str | None = None,
    mode: Literal["max", "min"] | None = None,
) -> FileResponse:
    """Download the snapshot with the best value (``mode`` defaults by the metric's name)."""
    run = session.get(Run, run_id)
    if run is None:
        raise not_found(RUN_NOT_FOUND)
    if mode is None:
        mode = default_mode(metric)
    snapshot = crud.best_snapshot(session, run_id=run_id, averager=averager, metric=metric,
                                  mode=mode)
    if snapshot is None:
        raise not_found(SNAPSHOT_NOT_FOUND)
    return _file_response(state, run, snapshot)


def _get(session: Any, run_id: int, snapshot_id: int) -> Snapshot:
    if session.get(Run, run_id) is None:
        raise not_found(RUN_NOT_FOUND)
    snapshot = crud.get_snapshot(session, run_id=run_id, snapshot_id=snapshot_id)
    if snapshot is None:
        raise not_found(SNAPSHOT_NOT_FOUND)
    return snapshot


@router.get("/{snapshot_id}", response_model=SnapshotOut, responses=ERRORS)
def read_snapshot(run_id: RunId, snapshot_id: SnapshotId, session: SessionDep) -> Any:
    """Read one snapshot's metadata."""
    return snapshot_dict(_get(session, run_id, snapshot_id))


@router.get("/{snapshot_id}/file", response_class=FileResponse, responses=FILE_RESPONSES)
def read_snapshot_file(
    run_id: RunId, snapshot_id: SnapshotId, session: SessionDep, state: StateDep
) -> FileResponse:
    """Download one snapshot's safetensors file (``ETag`` is its sha256)."""
    snapshot = _get(session, run_id, snapshot_id)
    return _file_response(state, snapshot.run, snapshot)


@router.delete("/{snapshot_id}", status_code=204, responses=ERRORS)
def delete_snapshot(run_id: RunId, snapshot_id: SnapshotId, state: StateDep) -> Response:
    """Delete a snapshot's row and file."""
    with state.db.writing() as session:
        snapshot = _get(session, run_id, snapshot_id)
        path = Path(snapshot.stored_path)
        session.delete(snapshot)
    (state.settings.data_dir / path).unlink(missing_ok=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

"""Metric points: batched ingest, downsampled series, latest value per key."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ema_core.wire import encode_float
from emaboard_server.app import read_points, writes
from emaboard_server.app.api.deps import MAX_ID, Digits, RunDep, RunId, SessionDep, StateDep
from emaboard_server.app.api.errors import describe, error_response, validation_details
from emaboard_server.app.downsample import MIN_POINTS, read_downsampled
from emaboard_server.app.schemas import (
    NUL_MESSAGE,
    ErrorResponse,
    IngestResult,
    MetricBatch,
    NoNul,
    PointOut,
    SeriesResponse,
)
from emaboard_server.app.serialize import point_dicts

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/runs/{run_id}", tags=["metrics"])

_BATCH_SCHEMA = MetricBatch.model_json_schema(ref_template="#/components/schemas/{model}")
_INGEST_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MetricBatch"}}},
    }
}


def _parse_batch(body: bytes, limit: int) -> MetricBatch | JSONResponse:
    """Validate a posted batch; an error answer (422 or 413) instead when it is not good.

    Runs in a worker thread. Validation stops at the first bad point (``fail_fast``), so a
    body of ``max_body_bytes`` costs at most ~20 ms per MiB whatever it holds (collecting
    every error of a 4 MiB list of ``{}`` took seconds).
    """
    try:
        batch = MetricBatch.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors[0]["type"] == "json_invalid":
            details = [{"loc": ["body"], "message": str(errors[0]["msg"])}]
            return error_response(422, f"Invalid JSON body: {details[0]['message']}", details)
        details = _point_details(errors)
        first = details[0]
        return error_response(422, describe(first["loc"], str(first["message"])), details)
    if len(batch.points) > limit:
        return error_response(
            413, f"Too many points: {len(batch.points)} > max_points_per_request {limit}"
        )
    if b"\\u0000" in body:  # JSON writes NUL only as this escape
        bad = next((i for i, p in enumerate(batch.points) if "\x00" in p["key"]), None)
        if bad is not None:
            loc: list[str | int] = ["body", "points", bad, "key"]
            return error_response(422, describe(loc, NUL_MESSAGE),
                                  [{"loc": loc, "message": NUL_MESSAGE}])
    return batch


VALUE_MESSAGE = "Input should be a number or one of 'NaN', 'Infinity', '-Infinity'"


def _point_details(errors: list[Any]) -> list[dict[str, Any]]:
    """Errors with ``body`` in front, the tries of a union (``value``) merged into one."""
    details: dict[tuple[Any, ...], dict[str, Any]] = {}
    for error in validation_details(errors):
        loc = ["body", *error["loc"]]
        if len(loc) > 4 and loc[1] == "points":
            merged = tuple(loc[:4])
            message = VALUE_MESSAGE if loc[3] == "value" else error["message"]
            details.setdefault(merged, {"loc": list(merged), "message": message})
        else:
            details.setdefault(tuple(loc), {"loc": loc, "message": error["message"]})
    return list(details.values())


def _log_conflicts(run_id: int, conflicts: list[tuple[str, int]]) -> None:
    shown = ", ".join(f"{key}@{step}" for key, step in conflicts[:3])
    more = f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
    logger.warning(
        "run %d: %d point(s) posted again at an existing (key, step) with a different value "
        "(%s%s); the stored values are kept. Two trainings writing into one run? Resume only "
        "from a checkpoint (resume='allow'), or start a new run", run_id, len(conflicts),
        shown, more,
    )


@router.post(
    "/metrics", response_model=IngestResult, openapi_extra=_INGEST_OPENAPI,
    responses={404: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
               422: {"model": ErrorResponse}},
)
async def create_metrics(run_id: RunId, request: Request, state: StateDep) -> Any:
    """Store a batch of points; a retried (key, step) is not stored twice."""
    body = await request.body()  # at most max_body_bytes (api/limits.py)
    parsed = await run_in_threadpool(_parse_batch, body, state.settings.max_points_per_request)
    if isinstance(parsed, JSONResponse):
        return parsed
    inserted, pushed = await run_in_threadpool(
        lambda: writes.store_points(state, run_id=run_id, batch=parsed))
    if pushed is not None:
        state.hub.publish_points_body(run_id, pushed)
    if inserted.rows:
        state.touched_runs.add(run_id)
    if inserted.conflicts:
        _log_conflicts(run_id, inserted.conflicts)
    return IngestResult(accepted=len(parsed.points), inserted=len(inserted.rows),
                        conflicts=len(inserted.conflicts))


def _series(series: read_points.Series) -> dict[str, list[Any]]:
    return {
        "steps": list(series.steps),
        "values": [encode_float(v) for v in series.values.tolist()],
        "wall_times": list(series.wall_times),
    }


@router.get("/metrics", response_model=SeriesResponse, responses={404: {"model": ErrorResponse}})
def read_metrics(
    run: RunDep,
    session: SessionDep,
    keys: Annotated[list[str] | None, Query(), NoNul] = None,
    prefix: Annotated[str | None, NoNul] = None,
    min_step: Annotated[int | None, Query(ge=0, le=MAX_ID), Digits] = None,
    max_step: Annotated[int | None, Query(ge=0, le=MAX_ID), Digits] = None,
    max_points: Annotated[int, Query(ge=MIN_POINTS, le=1_000_000), Digits] = 2000,
) -> JSONResponse:
    """Read series, each downsampled to at most ``max_points`` (first, min, max, last kept)."""
    run_id = run.id
    connection = session.connection()
    wanted = list(dict.fromkeys(keys or []))
    if prefix is not None or not keys:
        wanted += read_points.keys_with_prefix(connection, run_id=run_id, prefix=prefix or "")
    body = {"series": {
        key: _series(read_downsampled(connection, run_id=run_id, key=key, min_step=min_step,
                                      max_step=max_step, max_points=max_points))
        for key in dict.fromkeys(wanted)
    }}
    return JSONResponse(body)


@router.get("/keys", response_model=list[PointOut], responses={404: {"model": ErrorResponse}})
def read_keys(run: RunDep, session: SessionDep) -> list[dict[str, Any]]:
    """List the run's keys, each with its latest point."""
    return point_dicts(read_points.latest_points(session.connection(), run_id=run.id))


def batch_schema() -> dict[str, Any]:
    """JSON schema of the ingest body and its parts, for the OpenAPI components."""
    schema = json.loads(json.dumps(_BATCH_SCHEMA))
    defs = schema.pop("$defs", {})
    return {"MetricBatch": schema, **defs}


"""Downloads: a run's series at full resolution (CSV or JSON), the whole run as a zip."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from emaboard_server.app import export
from emaboard_server.app.api.deps import RunDep, RunId, StateDep
from emaboard_server.app.schemas import ErrorResponse, NoNul, SeriesResponse

router = APIRouter(prefix="/runs/{run_id}/export", tags=["export"])

POINTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The points: CSV (key,step,value,wall_time) or JSON (as /metrics)",
          "content": {"text/csv": {"schema": {"type": "string"}},
                      "application/json": {"schema": SeriesResponse.model_json_schema()}}},
    404: {"model": ErrorResponse},
}
ZIP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "points.csv, config.json, run.json, snapshots.json",
          "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
    404: {"model": ErrorResponse},
}
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


@router.get("/points", response_class=StreamingResponse, responses=POINTS_RESPONSES)
def export_points(
    run: RunDep, state: StateDep,
    keys: Annotated[list[str] | None, Query(), NoNul] = None,
    format: Literal["csv", "json"] = "csv",
) -> StreamingResponse:
    """Download series (all keys, or ``keys``) at full resolution as CSV or JSON."""
    wanted = export.run_keys(state, run.id, keys)
    what = keys[0] if keys and len(wanted) == 1 else "points"
    body = (export.points_csv if format == "csv" else export.points_json)(state, run.id, wanted)
    return StreamingResponse(body, media_type=MEDIA_TYPES[format],
                             headers=_attachment(f"{export.file_stem(run, what)}.{format}"))


@router.get("", response_class=StreamingResponse, responses=ZIP_RESPONSES)
async def export_run(run_id: RunId, state: StateDep) -> StreamingResponse:
    """Download the whole run as a zip: every point (CSV), the config, the run, the snapshots."""
    documents = await run_in_threadpool(export.run_documents, state, run_id)
    run = documents["run"]
    stem = export.file_stem_of(run["project"], run["name"])
    return StreamingResponse(export.run_zip(state, run_id, documents),
                             media_type="application/zip", headers=_attachment(f"{stem}.zip"))

"""Post-hoc EMA: a run's snapshots and storage, coefficients, synthesised checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from emaboard_server.app import crud
from emaboard_server.app.api.deps import MAX_ID, Digits, RunDep, RunId, SessionDep, StateDep
from emaboard_server.app.posthoc import (
    POSTHOC_KIND,
    discard_file,
    posthoc_listing,
    solution_dict,
    solve_run,
    stored_posthoc,
    synthesize_run,
)
from emaboard_server.app.schemas import ErrorResponse, PosthocOut, PosthocSolutionOut
from emaboard_server.app.serialize import posthoc_download_name, snapshot_dict
from emaboard_server.app.state import AppState

router = APIRouter(prefix="/runs/{run_id}/posthoc", tags=["posthoc"])
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
}
SigmaRel = Annotated[float, Query(description="σ_rel to rebuild, in (0, 0.2887)")]
Step = Annotated[int | None, Query(ge=0, le=MAX_ID, description="a snapshot step (default: "
                                   "the latest)"), Digits]


@router.get("", response_model=PosthocOut, responses=ERRORS)
def read_posthoc(run: RunDep, session: SessionDep, state: StateDep) -> Any:
    """The run's post-hoc EMA snapshots, the steps to rebuild at, a σ_rel grid, storage."""
    rows = crud.list_snapshots(session, run_id=run.id, kind=POSTHOC_KIND)
    listing = posthoc_listing(stored_posthoc(rows, state.settings.data_dir),
                              crud.snapshot_bytes(session, run_id=run.id),
                              state.settings.posthoc_budget_bytes)
    return {**listing, "snapshots": [snapshot_dict(row) for row in rows]}


@router.get("/solve", response_model=PosthocSolutionOut, responses=ERRORS)
def read_posthoc_solution(
    run: RunDep, session: SessionDep, state: StateDep, sigma_rel: SigmaRel, step: Step = None,
) -> Any:
    """How σ_rel at ``step`` is rebuilt: coefficients, condition number, residual."""
    rows = crud.list_snapshots(session, run_id=run.id, kind=POSTHOC_KIND)
    stored = stored_posthoc(rows, state.settings.data_dir)
    return solution_dict(stored, solve_run(stored, sigma_rel, step))


def _synthesize(
    state: AppState, run_id: int, sigma_rel: float, step: int | None
) -> tuple[Path, str, dict[str, str]]:
    with state.db.reading() as session:
        run = crud.require_run(session, run_id=run_id)
        rows = crud.list_snapshots(session, run_id=run_id, kind=POSTHOC_KIND)
        stored = stored_posthoc(rows, state.settings.data_dir)
        project, name = run.project, run.name
    path, solution = synthesize_run(stored, sigma_rel, step, state.settings.data_dir / "tmp")
    out = solution_dict(stored, solution)
    headers = {"X-Emaboard-Residual": repr(solution.residual),
               "X-Emaboard-Sum-Abs": repr(solution.sum_abs),
               "X-Emaboard-Ill-Posed": "1" if solution.ill_posed else "0"}
    filename = posthoc_download_name(project, name, solution.target_sigma_rel, out["step"])
    return path, filename, headers


@router.get("/file", response_class=FileResponse, responses={
    200: {"content": {"application/octet-stream": {}},
          "description": "The synthesised safetensors checkpoint"}, **ERRORS})
async def read_posthoc_file(
    run_id: RunId, state: StateDep, sigma_rel: SigmaRel, step: Step = None,
) -> FileResponse:
    """Download the EMA of σ_rel at ``step`` rebuilt from the stored snapshots (safetensors)."""
    async with state.posthoc_slots:  # waiting requests hold no worker thread
        path, filename, headers = await run_in_threadpool(
            _synthesize, state, run_id, sigma_rel, step)
    return FileResponse(path, media_type="application/octet-stream", filename=filename,
                        headers=headers, background=BackgroundTask(discard_file, path))

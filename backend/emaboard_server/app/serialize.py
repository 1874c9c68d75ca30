"""ORM rows to API dicts (wire form: non-finite floats as strings)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from ema_core.wire import encode_float
from emaboard_server.app import crud
from emaboard_server.app.models import Run, Snapshot
from emaboard_server.app.read_points import Point
from emaboard_server.app.schemas import RunOut, SnapshotOut

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_dict(run: Run, best: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A run in API form (``RunOut``), JSON-ready."""
    out = RunOut(
        id=run.id, project=run.project, name=run.name, config=run.config, status=run.status,  # type: ignore[arg-type]
        created_at=run.created_at, last_seen_at=run.last_seen_at, summary=run.summary,
        tags=run.tags, last_step=run.last_step, best=best,  # type: ignore[arg-type]
        creation_id=run.creation_id,
    )
    return out.model_dump(mode="json")


def runs_dicts(session: Any, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Several runs in API form, their ``best`` read in one query."""
    best = crud.best_values(session, runs=runs)
    return [run_dict(run, best[run.id]) for run in runs]


def snapshot_dict(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot in API form (``SnapshotOut``), JSON-ready."""
    out = SnapshotOut(
        id=snapshot.id, run_id=snapshot.run_id, averager=snapshot.averager, step=snapshot.step,
        metric=snapshot.metric, value=snapshot.value, sha256=snapshot.sha256,
        size_bytes=snapshot.size_bytes, metadata=snapshot.meta, created_at=snapshot.created_at,
        download_url=f"/api/runs/{snapshot.run_id}/snapshots/{snapshot.id}/file",
        kind=snapshot.kind or "snapshot",  # type: ignore[arg-type]
    )
    return out.model_dump(mode="json")


def point_dicts(points: Iterable[Point]) -> list[dict[str, Any]]:
    """Points as ``{"key", "step", "value", "wall_time"}`` with wire-form values."""
    return [
        {"key": p.key, "step": p.step, "value": encode_float(p.value), "wall_time": p.wall_time}
        for p in points
    ]


def download_name(run: Run, snapshot: Snapshot) -> str:
    """``<project>-<run>-<averager>-step<step>.safetensors`` with unsafe characters replaced."""
    stem = "-".join(_UNSAFE.sub("_", part) for part in (run.project, run.name, snapshot.averager))
    return f"{stem}-step{snapshot.step}.safetensors"


def posthoc_download_name(project: str, run: str, sigma_rel: float, step: int) -> str:
    """``<project>-<run>-posthoc_sigma_rel_<σ>-step<step>.safetensors``, unsafe characters
    replaced."""
    stem = "-".join(_UNSAFE.sub("_", part) for part in (project, run))
    return f"{stem}-posthoc_sigma_rel_{sigma_rel:.6g}-step{step}.safetensors"

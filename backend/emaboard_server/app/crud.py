"""Queries on runs and snapshots (metric points live in :mod:`emaboard_server.app.ingest`).

Every function takes the session first and everything else by keyword. ``get_*`` return
None for a missing row; ``require_*`` raise :class:`~emaboard_server.app.exceptions.NotFound`
(answered 404 with the API's fixed phrase).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ema_core.metric_keys import default_mode, parse_key
from ema_core.wire import check_tags
from emaboard_server.app.exceptions import (
    InvalidTags,
    RunMissing,
    RunNotFound,
    SnapshotConflict,
    SnapshotNotFound,
)
from emaboard_server.app.models import (
    LatestMetric,
    MetricPoint,
    MetricSeries,
    Run,
    RunTag,
    Snapshot,
)

MAX_NAME_LENGTH = 200


def get_or_create_run(
    session: Session, *, project: str, name: str, config: dict[str, Any] | None,
    resume: str = "allow", tags: list[str] | None = None, creation_id: str | None = None,
) -> tuple[Run, bool]:
    """Create the run (project, name), or resume it: status back to running, config merged,
    ``tags`` added to its tags.

    Args:
        resume: ``"allow"`` resumes an existing run; ``"never"`` creates a new run under the
            first free name ``name-2``, ``name-3``, … (cut to fit 200 characters);
            ``"must"`` resumes and raises when the run does not exist.
        creation_id: the client's id of the training: a run of ``project`` that has it is
            resumed whatever ``name`` and ``resume`` say (the request is a retry); a new
            run keeps it.

    Returns:
        The run and whether it was created.

    Raises:
        RunMissing: ``resume="must"`` and no such run.
        InvalidTags: the resumed run would hold more than ``MAX_TAGS`` tags.
    """
    now = time.time()
    run = None if creation_id is None else session.scalar(
        select(Run).where(Run.project == project, Run.creation_id == creation_id))
    if run is None:
        run = session.scalar(select(Run).where(Run.project == project, Run.name == name))
        if run is None and resume == "must":
            raise RunMissing(project, name)
        if run is None or resume == "never":
            if run is not None:
                name = _free_name(session, project=project, name=name)
            run = Run(project=project, name=name, config=config or {}, status="running",
                      created_at=now, last_seen_at=now, summary={}, creation_id=creation_id)
            run.set_tags(tags or [])
            session.add(run)
            session.flush()
            return run, True
    run.status = "running"
    run.last_seen_at = now
    if config:
        run.config = {**run.config, **config}
    if tags:
        run.set_tags(_checked_tags([*run.tags, *tags]))
    session.flush()
    return run, False


def _checked_tags(tags: list[str]) -> list[str]:
    try:
        return check_tags(tags)
    except ValueError as exc:
        raise InvalidTags(str(exc)) from None


def _free_name(session: Session, *, project: str, name: str) -> str:
    """The first of ``name-2``, ``name-3``, … that no run of ``project`` has."""
    stem = name[: MAX_NAME_LENGTH - 24]  # every candidate starts with it (suffix <= 24 chars)
    taken = set(session.scalars(
        select(Run.name).where(Run.project == project, Run.name.startswith(stem, autoescape=True))
    ))
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = name[: MAX_NAME_LENGTH - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


def list_runs(
    session: Session, *, project: str | None = None, tags: Sequence[str] = (),
    status: str | None = None, name_contains: str | None = None,
) -> Sequence[Run]:
    """Runs, newest first, optionally of one project, holding every tag of ``tags``, with one
    status, and/or whose name contains ``name_contains`` (case-insensitive, literal)."""
    query = select(Run).order_by(Run.created_at.desc(), Run.id.desc())
    if project is not None:
        query = query.where(Run.project == project)
    for tag in dict.fromkeys(tags):
        query = query.where(Run.tag_rows.any(RunTag.tag == tag))
    if status is not None:
        query = query.where(Run.status == status)
    if name_contains:
        query = query.where(Run.name.icontains(name_contains, autoescape=True))
    return session.scalars(query).all()


def get_run(session: Session, *, run_id: int) -> Run | None:
    """The run with this id, or None."""
    return session.get(Run, run_id)


def require_run(session: Session, *, run_id: int) -> Run:
    """The run with this id.

    Raises:
        RunNotFound: No run has this id.
    """
    run = session.get(Run, run_id)
    if run is None:
        raise RunNotFound
    return run


def update_run(
    session: Session, *, run: Run, status: str | None, summary: dict[str, Any] | None,
    tags: list[str] | None = None,
) -> Run:
    """Set the status, merge ``summary`` into the run's summary, replace its ``tags``
    (checked already); None leaves a field as it is."""
    if status is not None:
        run.status = status
    if summary is not None:
        run.summary = {**run.summary, **summary}
    if tags is not None:
        run.set_tags(tags)
    run.last_seen_at = time.time()
    session.flush()
    return run


def delete_run(session: Session, *, run: Run) -> list[str]:
    """Delete the run with its points and snapshot rows; return the snapshot files' paths."""
    paths = [snapshot.stored_path for snapshot in run.snapshots]
    # First the run's row lock: an ingest holding it finishes, later ones find no run.
    session.execute(select(Run.id).where(Run.id == run.id).with_for_update())
    series = select(MetricSeries.id).where(MetricSeries.run_id == run.id)
    session.execute(delete(MetricPoint).where(MetricPoint.series_id.in_(series)))
    session.delete(run)  # its series, latest values, tags and snapshot rows with it
    session.flush()
    return paths


def _primary_metric(metrics: set[str], summary: dict[str, Any]) -> tuple[str, str] | None:
    """The run's primary eval metric and its mode (``max`` or ``min``).

    ``summary["primary_metric"]`` / ``summary["primary_mode"]`` win when set; otherwise
    ``accuracy`` if logged, else the first metric name in sorted order. The mode defaults
    by the metric's name (:func:`ema_core.metric_keys.default_mode`: ``min`` for a loss or an
    error, in any case).
    """
    metric = summary.get("primary_metric")
    if not isinstance(metric, str) or metric not in metrics:
        if not metrics:
            return None
        metric = "accuracy" if "accuracy" in metrics else sorted(metrics)[0]
    mode = summary.get("primary_mode")
    if mode not in ("max", "min"):
        mode = default_mode(metric)
    return metric, mode


def best_values(
    session: Session, *, runs: Sequence[Run]
) -> dict[int, dict[str, dict[str, Any]]]:
    """Per run id: ``{averager: {"metric", "value", "step"}}`` from the eval series' extremes.

    One query over ``latest_metric`` (never the points).
    """
    by_run: dict[int, list[LatestMetric]] = {run.id: [] for run in runs}
    if not by_run:
        return {}
    rows = session.scalars(
        select(LatestMetric).where(
            LatestMetric.run_id.in_(by_run), LatestMetric.key.startswith("eval/")
        )
    )
    for row in rows:
        by_run[row.run_id].append(row)
    return {run.id: _best_of_run(by_run[run.id], run.summary) for run in runs}


def _best_of_run(rows: list[LatestMetric], summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    parsed: list[tuple[LatestMetric, str, str]] = []
    for row in rows:
        info = parse_key(row.key)  # eval/<live|averager>/<metric>
        if info.kind == "eval" and info.model is not None and info.metric is not None:
            parsed.append((row, info.model, info.metric))
    primary = _primary_metric({metric for _, _, metric in parsed}, summary)
    if primary is None:
        return {}
    metric, mode = primary
    best: dict[str, dict[str, Any]] = {}
    for row, averager, name in parsed:
        if mode == "max":
            value, step = row.max_value, row.max_step
        else:
            value, step = row.min_value, row.min_step
        if name == metric and value is not None and step is not None:
            best[averager] = {"metric": metric, "value": value, "step": step}
    return best


def create_snapshot(
    session: Session, *, run: Run, fields: dict[str, Any]
) -> tuple[Snapshot, bool]:
    """Insert a snapshot row for ``run`` with ``fields`` (column names of :class:`Snapshot`),
    unless (run, averager, step) is stored already.

    Returns:
        The snapshot and whether it was created; an existing one with the same ``sha256``
        is returned as it is (a retried upload).

    Raises:
        SnapshotConflict: the key is stored with another ``sha256``.
        sqlalchemy.exc.IntegrityError: another connection inserted the key meanwhile.
    """
    existing = session.scalar(select(Snapshot).where(
        Snapshot.run_id == run.id, Snapshot.averager == fields["averager"],
        Snapshot.step == fields["step"]))
    if existing is not None:
        if existing.sha256 != fields["sha256"]:
            raise SnapshotConflict(existing)
        return existing, False
    snapshot = Snapshot(run_id=run.id, created_at=time.time(), **fields)
    session.add(snapshot)
    session.flush()
    return snapshot, True


def list_snapshots(
    session: Session, *, run_id: int, averager: str | None = None, step: int | None = None,
    kind: str | None = None,
) -> Sequence[Snapshot]:
    """The run's snapshots by step, then id, optionally of one averager, step and/or kind."""
    query = select(Snapshot).where(Snapshot.run_id == run_id)
    if averager is not None:
        query = query.where(Snapshot.averager == averager)
    if step is not None:
        query = query.where(Snapshot.step == step)
    if kind is not None:
        query = query.where(Snapshot.kind == kind)
    return session.scalars(query.order_by(Snapshot.step, Snapshot.id)).all()


def delete_snapshots(session: Session, *, run_id: int, ids: Sequence[int]) -> list[str]:
    """Delete these snapshot rows of ``run_id``; return their files' paths (to remove once
    the transaction commits)."""
    rows = session.scalars(
        select(Snapshot).where(Snapshot.run_id == run_id, Snapshot.id.in_(list(ids)))
    ).all()
    paths = [row.stored_path for row in rows]
    for row in rows:
        session.delete(row)
    return paths


def snapshot_bytes(session: Session, *, run_id: int) -> dict[str, int]:
    """Bytes of the run's stored snapshot files by kind (``snapshot``, ``posthoc``)."""
    rows = session.execute(
        select(Snapshot.kind, func.sum(Snapshot.size_bytes))
        .where(Snapshot.run_id == run_id).group_by(Snapshot.kind)
    ).all()
    return {str(kind): int(total or 0) for kind, total in rows}


def require_snapshot(session: Session, *, run_id: int, snapshot_id: int) -> Snapshot:
    """The snapshot with this id, which must belong to run ``run_id``.

    Raises:
        RunNotFound: No run has the id ``run_id``.
        SnapshotNotFound: The run has no snapshot with this id.
    """
    require_run(session, run_id=run_id)
    snapshot = session.get(Snapshot, snapshot_id)
    if snapshot is None or snapshot.run_id != run_id:
        raise SnapshotNotFound
    return snapshot


def delete_snapshot(session: Session, *, snapshot: Snapshot) -> str:
    """Delete the snapshot's row; return its file's path (relative to ``data_dir``)."""
    path = snapshot.stored_path
    session.delete(snapshot)
    session.flush()
    return path


def best_snapshot(
    session: Session, *, run_id: int, averager: str | None, metric: str | None, mode: str
) -> Snapshot:
    """The snapshot with the best ``value`` (``mode`` max or min; later step wins ties).

    Raises:
        SnapshotNotFound: No snapshot with a value matches.
    """
    query = select(Snapshot).where(Snapshot.run_id == run_id, Snapshot.value.is_not(None))
    if averager is not None:
        query = query.where(Snapshot.averager == averager)
    if metric is not None:
        query = query.where(Snapshot.metric == metric)
    order = Snapshot.value.desc() if mode == "max" else Snapshot.value.asc()
    snapshot = session.scalars(query.order_by(order, Snapshot.step.desc()).limit(1)).first()
    if snapshot is None:
        raise SnapshotNotFound
    return snapshot

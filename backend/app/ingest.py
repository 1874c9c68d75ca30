"""Writing and reading metric points.

One ingest is one transaction: a single executemany-style ``INSERT ... ON CONFLICT DO
NOTHING ... RETURNING`` (so a retried point is never stored twice and we learn exactly which
points are new), one upsert of :class:`~backend.app.models.LatestMetric` per touched key, and
one ``UPDATE`` of the run's ``last_seen_at`` / ``last_step``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection, Insert, Table, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from backend.app.models import LatestMetric, MetricPoint, Run
from backend.app.schemas import NON_FINITE, PointIn

POINTS: Table = MetricPoint.__table__  # type: ignore[assignment]
LATEST: Table = LatestMetric.__table__  # type: ignore[assignment]
RUNS: Table = Run.__table__  # type: ignore[assignment]


class Point(NamedTuple):
    """A stored point: series key, step, value (may be NaN/±Inf), wall time (Unix s)."""

    key: str
    step: int
    value: float
    wall_time: float


def _dialect_insert(connection: Connection, table: Table) -> Any:
    name = connection.dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(
        f"Unsupported database dialect {name!r}: expected sqlite or postgresql"
    )


def to_rows(run_id: int, points: Iterable[PointIn], now: float) -> list[dict[str, Any]]:
    """Posted points as ``metric_point`` rows; string values become NaN/±Inf."""
    rows = []
    for point in points:
        value = point["value"]
        wall_time = point.get("wall_time")
        rows.append({
            "run_id": run_id,
            "key": point["key"],
            "step": point["step"],
            "value": NON_FINITE[value] if isinstance(value, str) else float(value),
            "wall_time": now if wall_time is None else float(wall_time),
        })
    return rows


def touch_run(connection: Connection, *, run_id: int, max_step: int | None, now: float) -> bool:
    """Move the run's ``last_seen_at`` (and ``last_step`` up); False when the run is missing."""
    values: dict[str, Any] = {"last_seen_at": now}
    if max_step is not None:
        values["last_step"] = case(
            (or_(RUNS.c.last_step.is_(None), RUNS.c.last_step < max_step), max_step),
            else_=RUNS.c.last_step,
        )
    result = connection.execute(update(RUNS).where(RUNS.c.id == run_id).values(values))
    return bool(result.rowcount)


def insert_points(connection: Connection, rows: list[dict[str, Any]]) -> list[Point]:
    """Insert ``rows`` (one statement, executemany); return the points that were new."""
    if not rows:
        return []
    stmt: Insert = (
        _dialect_insert(connection, POINTS)
        .on_conflict_do_nothing(index_elements=["run_id", "key", "step"])
        .returning(POINTS.c.key, POINTS.c.step, POINTS.c.value, POINTS.c.wall_time)
    )
    inserted = [Point(*row) for row in connection.execute(stmt, rows)]
    if inserted:
        _upsert_latest(connection, rows[0]["run_id"], inserted)
    return inserted


def _summaries(points: Sequence[Point]) -> list[dict[str, Any]]:
    """Per key: the last point, and the minimum and maximum (NaN ignored) with their steps."""
    acc: dict[str, dict[str, Any]] = {}
    for p in points:
        s = acc.get(p.key)
        if s is None:
            s = acc[p.key] = {"key": p.key, "step": p.step, "value": p.value,
                              "wall_time": p.wall_time, "min_value": None, "min_step": None,
                              "max_value": None, "max_step": None}
        elif p.step > s["step"]:
            s.update(step=p.step, value=p.value, wall_time=p.wall_time)
        if not math.isnan(p.value):
            if s["min_value"] is None or p.value < s["min_value"]:
                s.update(min_value=p.value, min_step=p.step)
            if s["max_value"] is None or p.value > s["max_value"]:
                s.update(max_value=p.value, max_step=p.step)
    return list(acc.values())


def _upsert_latest(connection: Connection, run_id: int, points: Sequence[Point]) -> None:
    rows = [{"run_id": run_id, **s} for s in _summaries(points)]
    stmt = _dialect_insert(connection, LATEST)
    new, old = stmt.excluded, LATEST.c
    newer = new.step > old.step
    lower = or_(old.min_value.is_(None), new.min_value < old.min_value)
    higher = or_(old.max_value.is_(None), new.max_value > old.max_value)
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={
            "step": case((newer, new.step), else_=old.step),
            "value": case((newer, new.value), else_=old.value),
            "wall_time": case((newer, new.wall_time), else_=old.wall_time),
            "min_value": case((lower, new.min_value), else_=old.min_value),
            "min_step": case((lower, new.min_step), else_=old.min_step),
            "max_value": case((higher, new.max_value), else_=old.max_value),
            "max_step": case((higher, new.max_step), else_=old.max_step),
        },
    )
    connection.execute(stmt, rows)


def latest_points(connection: Connection, *, run_id: int) -> list[Point]:
    """Each key of the run with its latest point, by key."""
    query = (
        select(LATEST.c.key, LATEST.c.step, LATEST.c.value, LATEST.c.wall_time)
        .where(LATEST.c.run_id == run_id)
        .order_by(LATEST.c.key)
    )
    return [Point(*row) for row in connection.execute(query)]


def keys_with_prefix(connection: Connection, *, run_id: int, prefix: str) -> list[str]:
    """The run's keys that start with ``prefix`` (taken literally, no wildcards)."""
    query = select(LATEST.c.key).where(
        LATEST.c.run_id == run_id, LATEST.c.key.startswith(prefix, autoescape=True)
    )
    return sorted(connection.scalars(query))


def read_series(
    connection: Connection,
    *,
    run_id: int,
    keys: Sequence[str],
    min_step: int | None,
    max_step: int | None,
) -> dict[str, list[Point]]:
    """The points of each key in ``keys`` within [min_step, max_step], by step."""
    query = select(POINTS.c.key, POINTS.c.step, POINTS.c.value, POINTS.c.wall_time).where(
        POINTS.c.run_id == run_id, POINTS.c.key.in_(keys)
    )
    if min_step is not None:
        query = query.where(POINTS.c.step >= min_step)
    if max_step is not None:
        query = query.where(POINTS.c.step <= max_step)
    series: dict[str, list[Point]] = {key: [] for key in keys}
    for row in connection.execute(query.order_by(POINTS.c.key, POINTS.c.step)):
        series[row[0]].append(Point(*row))
    return series

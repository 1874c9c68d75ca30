"""Writing metric points (reading them: :mod:`emaboard_server.app.read_points`).

One ingest is one transaction, under the server's write lock for SQLite:

1. ``UPDATE run`` moves ``last_seen_at`` / ``last_step`` (and tells whether the run exists),
   and each posted key's series id and latest stored step are read
   (:func:`touch_and_read_series`: two statements; one round trip on PostgreSQL); keys the
   run has not had before get a series id (:class:`~emaboard_server.app.models.MetricSeries`);
2. the steps that could already be stored are looked up — only for keys whose posted steps
   reach back to or below the key's latest stored step, so a run that streams forward never
   pays for it — and those points, and repeats inside the batch, are dropped (a retry); one
   whose value differs from the stored one is a *conflict*: dropped as well, and reported;
3. multi-row ``INSERT ... VALUES (...), ... ON CONFLICT (series_id, step) DO NOTHING``
   statements of 1,000 rows store the new points on SQLite (the conflict clause is a guard:
   the run's ingests are serialised), one binary ``COPY`` on PostgreSQL
   (:mod:`emaboard_server.app.ingest_postgres`);
4. one executemany upsert of :class:`~emaboard_server.app.models.LatestMetric` per touched
   key keeps its latest point and its running minimum and maximum.

On PostgreSQL a batch is first stored without step 2, by ``ingest_postgres.copy_posted``
(the primary key refuses a stored point); only when that fails is it stored this way.

Statements on the hot path are plain SQL (valid for SQLite and PostgreSQL) run through the
DBAPI's ``executemany``: SQLAlchemy's per-row parameter processing cost more than the insert.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, and_, or_, select

from ema_core.wire import NON_FINITE
from emaboard_server.app.models import LatestMetric, MetricPoint, Run
from emaboard_server.app.schemas import PointIn
from emaboard_server.app.series_ids import KEYS_PER_LOOKUP, READ_SERIES, Known, create_series
from emaboard_server.app.sql_text import render, sql_for

POINTS: Table = MetricPoint.__table__  # type: ignore[assignment]
LATEST: Table = LatestMetric.__table__  # type: ignore[assignment]
RUNS: Table = Run.__table__  # type: ignore[assignment]


_POINT_COLUMNS = "series_id, step, value, wall_time"
_LATEST_COLUMNS = (
    "run_id, key, step, value, wall_time, min_value, min_step, max_value, max_step"
)
ROWS_PER_INSERT = 1000  # 5,000 parameters: under SQLite's (32,766) and PostgreSQL's limits
# SET expressions read the row as it was, so each CASE compares against the old values.
_UPSERT_LATEST = (
    f"INSERT INTO latest_metric ({_LATEST_COLUMNS}) VALUES ({{9}}) "
    "ON CONFLICT (run_id, key) DO UPDATE SET "
    "step = CASE WHEN excluded.step > latest_metric.step "
    "THEN excluded.step ELSE latest_metric.step END, "
    "value = CASE WHEN excluded.step > latest_metric.step "
    "THEN excluded.value ELSE latest_metric.value END, "
    "wall_time = CASE WHEN excluded.step > latest_metric.step "
    "THEN excluded.wall_time ELSE latest_metric.wall_time END, "
    "min_value = CASE WHEN latest_metric.min_value IS NULL "
    "OR excluded.min_value < latest_metric.min_value "
    "THEN excluded.min_value ELSE latest_metric.min_value END, "
    "min_step = CASE WHEN latest_metric.min_value IS NULL "
    "OR excluded.min_value < latest_metric.min_value "
    "THEN excluded.min_step ELSE latest_metric.min_step END, "
    "max_value = CASE WHEN latest_metric.max_value IS NULL "
    "OR excluded.max_value > latest_metric.max_value "
    "THEN excluded.max_value ELSE latest_metric.max_value END, "
    "max_step = CASE WHEN latest_metric.max_value IS NULL "
    "OR excluded.max_value > latest_metric.max_value "
    "THEN excluded.max_step ELSE latest_metric.max_step END"
)
_KEY = operator.itemgetter(0)
_STEP = operator.itemgetter(1)
_VALUE = operator.itemgetter(2)


Row = tuple[str, int, float, float]  # (key, step, value, wall_time): a Point without names


@dataclass
class Batch:
    """A posted batch, deduplicated (the first of a repeated (key, step) wins), by key."""

    rows: list[Row]
    by_key: dict[str, list[Row]]
    as_posted: bool = False  # True when the posted points, as they are, are exactly ``rows``
    conflicts: list[tuple[str, int]] = field(default_factory=list)  # repeats, other value

    @property
    def max_step(self) -> int | None:
        """The largest step in the batch, None when empty."""
        return max((max(r[1] for r in rows) for rows in self.by_key.values()), default=None)


def prepare(points: Sequence[PointIn], now: float) -> Batch:
    """Posted points as rows: wire values to floats, a missing ``wall_time`` set to ``now``,
    repeats of a (key, step) dropped (the first wins), grouped by key.

    Written as comprehensions and builtins (C loops): this runs for every ingested point.
    """
    raw: list[tuple[str, int, Any, Any]] = [
        (p["key"], p["step"], p["value"], p.get("wall_time")) for p in points
    ]
    rows: list[Row] = raw
    as_posted = True
    if any(r[2].__class__ is str or r[3] is None for r in raw):
        rows = [(k, s, NON_FINITE[v] if v.__class__ is str else v, now if w is None else w)
                for k, s, v, w in raw]
        as_posted = not any(r[3] is None for r in raw)  # wire-form strings stay as posted
    conflicts: list[tuple[str, int]] = []
    if len({(r[0], r[1]) for r in rows}) != len(rows):
        first = {(r[0], r[1]): r for r in reversed(rows)}
        conflicts = [(k, s) for k, s, v, _ in rows
                     if first[(k, s)][2] is not v and not same_value(first[(k, s)][2], v)]
        rows = list(first.values())[::-1]
        as_posted = False
    return Batch(rows, _group(rows), as_posted, conflicts)


def same_value(a: float, b: float | None) -> bool:
    """Whether two point values are the same (NaN equals NaN; a stored NaN reads as None)."""
    if b is None or b != b:
        return a != a
    return a == b


class Inserted(NamedTuple):
    """What :func:`insert_points` did with a batch."""

    rows: Sequence[Row]  # the new rows, in posted order
    conflicts: list[tuple[str, int]]  # (key, step) posted again with another value: not stored


def _group(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Rows by key, each key's rows in posted order (a stable sort, then groupby: C loops)."""
    return {key: list(group)
            for key, group in itertools.groupby(sorted(rows, key=_KEY), key=_KEY)}


_TOUCH_RUN = (
    "UPDATE run SET last_seen_at = {1}, last_step = CASE WHEN last_step IS NULL "
    "OR last_step < {1} THEN {1} ELSE last_step END WHERE id = {1}"
)


def touch_run(
    connection: Connection, *, run_id: int, max_step: int | None, now: float
) -> bool:
    """Move the run's ``last_seen_at`` (and ``last_step`` up to ``max_step``, None: unchanged).

    Returns:
        False when the run does not exist.
    """
    result = connection.exec_driver_sql(
        sql_for(connection, _TOUCH_RUN), (now, max_step, max_step, run_id)
    )
    return bool(result.rowcount)


def touch_and_read_series(
    connection: Connection, *, run_id: int, batch: Batch, now: float
) -> dict[str, Known] | None:
    """:func:`touch_run` to the batch's largest step, then read the series id and latest
    stored step of each of the batch's keys that the run has (None when the run does not
    exist)."""
    keys = list(batch.by_key)
    if connection.dialect.name == "postgresql":
        from emaboard_server.app.ingest_postgres import touch_and_read_series as on_postgres

        return on_postgres(connection, run_id=run_id, max_step=batch.max_step, now=now,
                           keys=keys)
    if not touch_run(connection, run_id=run_id, max_step=batch.max_step, now=now):
        return None
    found: dict[str, Known] = {}
    for start in range(0, len(keys), KEYS_PER_LOOKUP):
        chunk = keys[start:start + KEYS_PER_LOOKUP]
        sql = _series_sql(connection.dialect.paramstyle, len(chunk))
        found.update((key, Known(series_id, step))
                     for key, series_id, step in connection.exec_driver_sql(sql, (run_id, *chunk)))
    return found


@functools.lru_cache(maxsize=64)
def _series_sql(style: str, n_keys: int) -> str:
    marks = ", ".join([render(style, "{1}")] * n_keys)
    return render(style, READ_SERIES) + f" IN ({marks})"


def _stored_values(
    connection: Connection, batch: Batch, known: dict[str, Known]
) -> dict[tuple[str, int], float | None]:
    """The (key, step) pairs in the batch's step ranges that the run already has, with their
    stored values (None for a stored NaN).

    Steps beyond a key's latest stored step are new without looking (the usual case); for
    the other keys, one indexed range lookup per key (several keys per query).
    """
    items = []
    for key, rows in batch.by_key.items():
        low = min(_STEP(r) for r in rows)
        latest = known[key].latest_step if key in known else None
        if latest is not None and low <= latest:
            items.append((known[key].series_id, low, max(_STEP(r) for r in rows)))
    keys = {known[key].series_id: key for key in known}
    found: dict[tuple[str, int], float | None] = {}
    for start in range(0, len(items), KEYS_PER_LOOKUP):
        clauses = [
            and_(POINTS.c.series_id == series_id, POINTS.c.step.between(low, high))
            for series_id, low, high in items[start:start + KEYS_PER_LOOKUP]
        ]
        query = select(POINTS.c.series_id, POINTS.c.step, POINTS.c.value).where(or_(*clauses))
        found.update(((keys[series_id], step), value)
                     for series_id, step, value in connection.execute(query))
    return found


def insert_points(
    connection: Connection, run_id: int, batch: Batch, *, known: dict[str, Known],
    copy: bool = True,
) -> Inserted:
    """Store the batch's points that the run does not have yet (1,000 rows per statement).

    A point at a (key, step) the run already has is not stored again: with the same value it
    is a retry (idempotent); with another value it is a *conflict* — the stored value is
    kept, and the pair is reported so that the caller can count and log it.

    Call inside the write transaction (under the write lock for SQLite), after
    :func:`touch_and_read_series` (whose result is ``known``), so the lookup of stored steps
    and the insert see the same table. ``ON CONFLICT DO NOTHING`` stays as the
    guard for databases with concurrent writers.

    Raises:
        PointExists: PostgreSQL's ``COPY`` met a stored point (the transaction is aborted):
            call again in a new one with ``copy=False``.

    Returns:
        The new rows in posted order, and the conflicts (those of the batch itself first).
    """
    stored = _stored_values(connection, batch, known)
    conflicts = list(batch.conflicts)
    if stored:
        conflicts += [(k, s) for k, s, v, _ in batch.rows
                      if (k, s) in stored and not same_value(v, stored[(k, s)])]
        fresh = [r for r in batch.rows if (r[0], r[1]) not in stored]
        batch = Batch(fresh, _group(fresh))
    if not batch.rows:
        return Inserted([], conflicts)
    ids = {key: known[key].series_id for key in batch.by_key if key in known}
    if len(ids) < len(batch.by_key):
        ids |= create_series(connection, run_id, [k for k in batch.by_key if k not in ids])
    upsert_latest(connection, _insert_rows(connection, run_id, ids, batch, copy))
    return Inserted(batch.rows, conflicts)


def upsert_latest(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Merge a batch's :func:`latest_rows` into ``latest_metric`` (one executemany)."""
    connection.exec_driver_sql(sql_for(connection, _UPSERT_LATEST), rows)


def _insert_rows(
    connection: Connection, run_id: int, ids: dict[str, int], batch: Batch, copy: bool
) -> list[tuple[Any, ...]]:
    """Store new rows: ``COPY`` on PostgreSQL (unless ``copy`` is False), key by key, else
    multi-row ``INSERT ... ON CONFLICT DO NOTHING`` in posted order.

    Returns:
        The batch's ``latest_metric`` rows (:func:`_summaries`), computed on PostgreSQL while
        it stores the rows.
    """
    if copy and connection.dialect.name == "postgresql":
        from emaboard_server.app.ingest_postgres import copy_points  # psycopg: [postgres]

        with copy_points(connection, ids, batch.by_key):
            return latest_rows(run_id, batch)
    _insert_values(connection, ids, batch.rows)
    return latest_rows(run_id, batch)


def _insert_values(connection: Connection, ids: dict[str, int], rows: Sequence[Row]) -> None:
    """Multi-row ``INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING``, 1,000 rows each.

    SQLAlchemy's "insertmanyvalues" form of executemany, by hand: one statement step per
    1,000 rows instead of one per row (about a fifth less CPU in SQLite, and one release of
    the GIL instead of a thousand). ``ids``: the series id of each row's key.
    """
    nan = any(r[2] != r[2] for r in rows)  # NaN is stored as NULL
    params = [(ids[k], s, None if nan and v != v else v, w) for k, s, v, w in rows]
    for start in range(0, len(params), ROWS_PER_INSERT):
        chunk = params[start:start + ROWS_PER_INSERT]
        sql = _insert_sql(connection.dialect.paramstyle, len(chunk))
        connection.exec_driver_sql(sql, tuple(itertools.chain.from_iterable(chunk)))


@functools.lru_cache(maxsize=256)
def _insert_sql(style: str, n_rows: int) -> str:
    row = "(" + render(style, "{4}") + ")"
    return (f"INSERT INTO metric_point ({_POINT_COLUMNS}) VALUES {', '.join([row] * n_rows)} "
            "ON CONFLICT (series_id, step) DO NOTHING")


def latest_rows(run_id: int, batch: Batch) -> list[tuple[Any, ...]]:
    """The batch's ``latest_metric`` rows: per key, the last point, and the minimum and
    maximum (NaN ignored) with their steps."""
    out = []
    for key, rows in batch.by_key.items():
        _, step, value, wall_time = max(rows, key=_STEP)
        finite = [r for r in rows if r[2] == r[2]]  # NaN != NaN
        low = min(finite, key=_VALUE) if finite else (None, None, None)
        high = max(finite, key=_VALUE) if finite else (None, None, None)
        out.append((run_id, key, step, None if value != value else value, wall_time,
                    low[2], low[1], high[2], high[1]))
    return out

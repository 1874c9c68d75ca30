"""Server-side downsampling that keeps spikes, computed inside the database.

A series longer than ``max_points`` is cut into equal step ranges; each keeps its first
point, its minimum, its maximum and its last point (the M4 aggregation: Jugel et al., "M4: A
Visualization-Oriented Time Series Data Aggregation", VLDB 2014) and, when the series has NaN
values, also its first NaN, so a divergence is never averaged away. ±Inf take part in
min/max as they are.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, bindparam, text

from emaboard_server.app.read_points import MAX_STEP, Series, read_series

MIN_POINTS = 5

# Downsampling inside the database: a 200k-point series is aggregated by SQL in one scan
# instead of shipping 200k rows to Python (the row objects alone cost ~0.3 s per series).
# Buckets are equal step ranges (M4's equal-width time buckets); each keeps its first and
# last step, the step of its minimum and of its maximum (the earliest on ties) and, when the
# series has NaN (stored as NULL), its first NaN; those steps are found by primary-key range
# scans of each bucket. Plain SQL, valid on SQLite and PostgreSQL (SQLite's own form below).
# Before it, the range's ends are two primary-key seeks and its size is counted only up to
# ``max_points + 1`` rows: a long series is not scanned twice (whether it has NaN is seen in
# the aggregation's answer; ~20 % of a 200k-point read, docs/benchmarks.md).
_RANGE = text(
    "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM metric_point "
    "  WHERE series_id = :series_id AND step BETWEEN :lo AND :hi LIMIT :cap) AS kept), "
    "(SELECT MIN(step) FROM metric_point "
    "  WHERE series_id = :series_id AND step BETWEEN :lo AND :hi), "
    "(SELECT MAX(step) FROM metric_point "
    "  WHERE series_id = :series_id AND step BETWEEN :lo AND :hi)"
)
_IN_BUCKET = (
    "SELECT MIN(m.step) FROM metric_point m WHERE m.series_id = :series_id "
    "AND m.step BETWEEN agg.first AND agg.last AND m.value "
)
_BUCKET_STEPS = text(
    "WITH agg AS (SELECT MIN(step) AS first, MAX(step) AS last, MIN(value) AS vmin, "
    "  MAX(value) AS vmax FROM metric_point "
    "  WHERE series_id = :series_id AND step BETWEEN :lo AND :hi "
    "  GROUP BY (step - :lo) / :width) "
    f"SELECT first, last, ({_IN_BUCKET} = agg.vmin), ({_IN_BUCKET} = agg.vmax), "
    f"({_IN_BUCKET} IS NULL) FROM agg"
)
# SQLite sorts the rows of the GROUP BY above in a temporary b-tree (its planner does not
# see that the bucket index grows with the step; EXPLAIN QUERY PLAN: USE TEMP B-TREE FOR
# GROUP BY): that aggregation took ~70 ms of 200k points, this one ~35 ms. Here the
# buckets are generated as step ranges instead, and each aggregate is a primary-key range
# scan of one bucket (first and last step are seeks): no sort. ``LIMIT -1 OFFSET 0`` keeps
# SQLite from flattening ``agg`` into the outer query (which would evaluate each bucket's
# scans again inside every ``_IN_BUCKET``). Bucket ``k`` is ``[lo + k*width,
# lo + (k+1)*width - 1]``, as in the GROUP BY; ``MIN(e, :hi - :width) + :width`` is
# ``MIN(e + :width, :hi)`` without overflow near the largest step. SQLite only (``MIN`` of
# two values, ``LIMIT -1``); PostgreSQL keeps the GROUP BY. Each bucket costs a few seeks,
# so for narrow buckets the sort is cheaper: measured 200k points in buckets of 40 steps
# ~10 % faster, of 16 steps ~8 % slower (docs/benchmarks.md); the ranges from 32 steps on.
_RANGES_FROM_WIDTH = 32
_IN_RANGE = (
    "FROM metric_point m WHERE m.series_id = :series_id AND m.step BETWEEN b.s AND b.e"
)
_IN_RANGE_AGG = (
    "SELECT MIN(m.step) FROM metric_point m WHERE m.series_id = :series_id "
    "AND m.step BETWEEN agg.s AND agg.e AND m.value "
)
_BUCKET_STEPS_SQLITE = text(
    "WITH RECURSIVE b(s, e) AS (SELECT :lo, :lo + :width - 1 UNION ALL "
    "  SELECT e + 1, MIN(e, :hi - :width) + :width FROM b WHERE e < :hi), "
    f"agg AS (SELECT b.s AS s, b.e AS e, (SELECT MIN(m.step) {_IN_RANGE}) AS first, "
    f"  (SELECT MAX(m.step) {_IN_RANGE}) AS last, (SELECT MIN(m.value) {_IN_RANGE}) AS vmin, "
    f"  (SELECT MAX(m.value) {_IN_RANGE}) AS vmax FROM b LIMIT -1 OFFSET 0) "
    f"SELECT first, last, ({_IN_RANGE_AGG} = agg.vmin), ({_IN_RANGE_AGG} = agg.vmax), "
    f"({_IN_RANGE_AGG} IS NULL) FROM agg WHERE first IS NOT NULL"
)
_SERIES_ID = text("SELECT id FROM metric_series WHERE run_id = :run_id AND key = :key")
_POINTS_AT = text(
    "SELECT step, value, wall_time FROM metric_point "
    "WHERE series_id = :series_id AND step IN :steps ORDER BY step"
).bindparams(bindparam("steps", expanding=True))


def read_downsampled(
    connection: Connection, *, run_id: int, key: str, min_step: int | None,
    max_step: int | None, max_points: int,
) -> Series:
    """One key's points with ``min_step <= step <= max_step``, at most ``max_points`` of them.

    Series of at most ``max_points`` points come back whole. Longer ones are cut into
    ``max_points // 4`` (``// 5`` when the series has NaN) equal step ranges, each keeping
    its first, minimum, maximum and last point (and first NaN): spikes and the last point
    survive (M4: Jugel et al., VLDB 2014). The aggregation runs in the database.

    Returns:
        The kept points in step order (``values`` float64, NaN where NaN was stored).

    Raises:
        ValueError: ``max_points`` below 5.
    """
    if max_points < MIN_POINTS:
        raise ValueError(f"Invalid max_points {max_points}: expected at least {MIN_POINTS}")
    lo, hi = min_step or 0, MAX_STEP if max_step is None else max_step
    series_id = connection.execute(_SERIES_ID, {"run_id": run_id, "key": key}).scalar()
    if series_id is None:
        return Series((), np.empty(0), ())
    where = {"series_id": series_id, "lo": lo, "hi": hi}
    count, first, last = connection.execute(_RANGE, {**where, "cap": max_points + 1}).one()
    if count <= max_points:
        return read_series(connection, run_id=run_id, key=key, min_step=lo, max_step=hi)
    rows = _bucket_steps(connection, where, first, last, max_points // 4)
    if any(row[4] is not None for row in rows):  # NaN: a fifth point per bucket
        rows = _bucket_steps(connection, where, first, last, max_points // 5)
    keep = sorted({step for row in rows for step in row if step is not None})
    points = connection.execute(_POINTS_AT, {**where, "steps": keep}).all()
    steps, values, wall_times = zip(*points, strict=True)
    return Series(steps, np.array(values, dtype=np.float64), wall_times)


def _bucket_steps(
    connection: Connection, where: dict[str, object], first: int, last: int, buckets: int
) -> list[tuple[int | None, ...]]:
    """Per bucket: first, last, minimum's and maximum's step, first NaN's step (or None)."""
    # ceil, so that every bucket index (step - first) // width is below ``buckets``
    width = -(-(last - first + 1) // buckets)
    ranges = connection.dialect.name == "sqlite" and width >= _RANGES_FROM_WIDTH
    query = _BUCKET_STEPS_SQLITE if ranges else _BUCKET_STEPS
    rows = connection.execute(query, {**where, "lo": first, "hi": last, "width": width})
    return [tuple(row) for row in rows]

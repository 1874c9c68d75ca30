"""Reading metric points: a run's latest point per key, its keys, one key's series.

Points are stored by :mod:`emaboard_server.app.ingest` under the (run, key)'s series id
(:mod:`emaboard_server.app.series_ids`); the latest point per key is kept in
``latest_metric``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from sqlalchemy import Connection, Table, select

from emaboard_server.app.models import LatestMetric
from emaboard_server.app.sql_text import sql_for

LATEST: Table = LatestMetric.__table__  # type: ignore[assignment]


class Point(NamedTuple):
    """A stored point: series key, step, value (may be NaN/±Inf), wall time (Unix s)."""

    key: str
    step: int
    value: float
    wall_time: float


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


SERIES_ID = "(SELECT id FROM metric_series WHERE run_id = {1} AND key = {1})"
_READ_SERIES = (
    f"SELECT step, value, wall_time FROM metric_point WHERE series_id = {SERIES_ID} "
    "AND step >= {1} AND step <= {1} ORDER BY step"
)
MAX_STEP = 2**63 - 1


class Series(NamedTuple):
    """One key's points in step order as columns; NaN values are NaN in ``values``."""

    steps: Sequence[int]
    values: np.ndarray  # (n,) float64
    wall_times: Sequence[float]


def read_series(
    connection: Connection, *, run_id: int, key: str, min_step: int | None, max_step: int | None
) -> Series:
    """The points of ``key`` with ``min_step <= step <= max_step``, by step.

    Read with the DBAPI cursor into columns (no per-row objects): a 200k-point series is
    read in a fraction of the time the ORM-typed path takes.
    """
    params = (run_id, key, min_step or 0, MAX_STEP if max_step is None else max_step)
    rows = connection.exec_driver_sql(sql_for(connection, _READ_SERIES), params).fetchall()
    if not rows:
        return Series((), np.empty(0), ())
    steps, values, wall_times = zip(*rows, strict=True)
    # NULL (a stored NaN) becomes NaN in a float64 array.
    return Series(steps, np.array(values, dtype=np.float64), wall_times)

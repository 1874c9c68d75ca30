"""Series ids: the integer each (run, key) is stored under in ``metric_point``.

A key gets its id (:class:`~emaboard_server.app.models.MetricSeries`) in the ingest
transaction that stores its first point; ingest reads the ids of a batch's keys together
with their latest stored steps (:data:`READ_SERIES`), in the round trip that touches the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection, Table, insert, select

from emaboard_server.app.models import MetricSeries

SERIES: Table = MetricSeries.__table__  # type: ignore[assignment]
KEYS_PER_LOOKUP = 200  # keys per lookup statement
# The series id and latest stored step of a run's keys; ``{1}``: a placeholder; completed
# by the keys: " IN (...)", or " = ANY(%s)" on PostgreSQL.
READ_SERIES = (
    "SELECT s.key, s.id, l.step FROM metric_series s LEFT JOIN latest_metric l "
    "ON l.run_id = s.run_id AND l.key = s.key WHERE s.run_id = {1} AND s.key"
)


class Known(NamedTuple):
    """A key the run has: its series id and its latest stored step (None: no point yet)."""

    series_id: int
    latest_step: int | None


def create_series(connection: Connection, run_id: int, keys: Sequence[str]) -> dict[str, int]:
    """New series ids for ``keys``, which the run does not have yet, by key.

    Call in the ingest transaction, which holds the run's row (no other writer adds keys to
    the run meanwhile).
    """
    connection.execute(insert(SERIES), [{"run_id": run_id, "key": key} for key in keys])
    ids: dict[str, int] = {}
    for start in range(0, len(keys), KEYS_PER_LOOKUP):
        query = select(SERIES.c.key, SERIES.c.id).where(
            SERIES.c.run_id == run_id, SERIES.c.key.in_(keys[start:start + KEYS_PER_LOOKUP]))
        ids.update((key, series_id) for key, series_id in connection.execute(query))
    return ids

"""PostgreSQL's path for new metric points: one ``COPY`` per batch.

Measured on the same 200,000 points in 5,000-point batches (``bench/ingest.py`` and
docs/benchmarks.md): the multi-row ``INSERT ... VALUES`` that SQLite takes spent most of its
time in psycopg splitting a 4,000-placeholder query on the client, and the foreign key
``metric_point.run_id -> run.id`` cost PostgreSQL 3.5-5 µs per row (a trigger per row; it
was dropped in migration 0004). ``COPY ... FROM STDIN`` in binary format, rows written by
psycopg's C row writer, costs the server ~2.4 µs and the client ~0.7 µs per point (text
format: ~2.9 and ~1.1 µs).

``COPY`` cannot skip a row that exists. Ingest holds the run's row lock from ``touch_run``
to commit and has dropped the (key, step) pairs the run already stores, so none can exist;
should one exist anyway, the copy's savepoint is rolled back and the caller stores the rows
with ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from sqlalchemy import Connection

logger = logging.getLogger(__name__)

Row = tuple[str, int, float, float]  # (key, step, value, wall_time); NaN stored as NULL
COPY_POINTS = "COPY metric_point (run_id, key, step, value, wall_time) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ("int4", "text", "int8", "float8", "float8")


def copy_points(connection: Connection, run_id: int, rows: Sequence[Row]) -> bool:
    """``COPY`` the rows into ``metric_point`` (binary format) inside a savepoint.

    Args:
        connection: A connection in the ingest transaction (run row locked by ``touch_run``).
        run_id: The run the rows belong to.
        rows: New rows: no (key, step) of them is stored yet. Values are floats (NaN is
            written as NULL).

    Returns:
        True when they were stored; False when one of them existed after all (the savepoint
        was rolled back and nothing was stored: store them with ``ON CONFLICT DO NOTHING``).
    """
    raw = connection.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, not {type(raw).__name__}")
    run = int(run_id)
    try:
        with connection.begin_nested(), raw.cursor() as cursor, cursor.copy(COPY_POINTS) as copy:
            copy.set_types(COPY_TYPES)
            write = copy.write_row
            for key, step, value, wall_time in rows:  # psycopg's C row writer
                write((run, key, step, None if value != value else value, wall_time))
    except psycopg.errors.UniqueViolation:
        logger.warning("run %d: a posted point existed although ingest had checked; storing "
                       "the batch with ON CONFLICT DO NOTHING instead", run_id)
        return False
    return True

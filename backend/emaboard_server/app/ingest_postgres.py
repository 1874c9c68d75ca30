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
should one exist anyway, :class:`PointExists` aborts the transaction and the caller stores
the batch again with ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from sqlalchemy import Connection

from emaboard_server.app.exceptions import PointExists

Row = tuple[str, int, float, float]  # (key, step, value, wall_time); NaN stored as NULL
COPY_POINTS = "COPY metric_point (run_id, key, step, value, wall_time) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ("int4", "text", "int8", "float8", "float8")


def copy_points(connection: Connection, run_id: int, rows: Sequence[Row]) -> None:
    """``COPY`` the rows into ``metric_point`` (binary format).

    Args:
        connection: A connection in the ingest transaction (run row locked by ``touch_run``).
        run_id: The run the rows belong to.
        rows: New rows: no (key, step) of them is stored yet. Values are floats (NaN is
            written as NULL).

    Raises:
        PointExists: One of them existed after all; the transaction is aborted (roll it back
            and store the batch again with ``ON CONFLICT DO NOTHING``). No savepoint guards
            the copy: it would cost two more round trips on every batch, for a case that the
            run's row lock rules out.
    """
    raw = connection.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, not {type(raw).__name__}")
    run = int(run_id)
    try:
        with raw.cursor() as cursor, cursor.copy(COPY_POINTS) as copy:
            copy.set_types(COPY_TYPES)
            write = copy.write_row
            for key, step, value, wall_time in rows:  # psycopg's C row writer
                write((run, key, step, None if value != value else value, wall_time))
    except psycopg.errors.UniqueViolation as exc:
        raise PointExists(str(exc)) from exc

"""PostgreSQL's path for metric points: the run's update and its series ids in one round
trip, then one ``COPY``: of the posted points as they are (:func:`copy_posted`), or of the
new ones after the lookup of stored steps (:func:`copy_points`).

Measured on the same 200,000 points in 5,000-point batches (``bench/ingest.py`` and
docs/benchmarks.md): the multi-row ``INSERT ... VALUES`` that SQLite takes spent most of its
time in psycopg splitting a 4,000-placeholder query on the client, and the foreign key
``metric_point.run_id -> run.id`` cost PostgreSQL 3.5-5 µs per row (a trigger per row; it
was dropped in migration 0004). ``COPY ... FROM STDIN`` in binary format is the fastest way
in. Its rows are built here with numpy (psycopg's row writer cost ~0.6 µs of Python per
point) and sent before the ``latest_metric`` rows are computed, which happens while
PostgreSQL stores the points.

``COPY`` cannot skip a row that exists: :class:`PointExists` aborts the transaction. For
:func:`copy_posted` that is the expected end of a retried batch (the caller then looks up
the stored steps and counts conflicts); :func:`copy_points` runs after that lookup, under
the run's row lock, so none can exist, and should one exist anyway the caller stores the
batch again with ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import psycopg
from psycopg.copy import LibpqWriter
from sqlalchemy import Connection

from emaboard_server.app.exceptions import PointExists, RunNotFound
from emaboard_server.app.posted import Columns
from emaboard_server.app.schemas import PointIn
from emaboard_server.app.series_ids import READ_SERIES, Known, create_series

Row = tuple[str, int, float, float]  # (key, step, value, wall_time); NaN stored as NULL
COPY_POINTS = "COPY metric_point (series_id, step, value, wall_time) FROM STDIN (FORMAT BINARY)"
# The binary COPY format (PostgreSQL docs, "COPY", "Binary Format"): a signature, flags and
# header-extension length; then per row the field count (int16) and per field its length
# (int32, -1 for NULL) and bytes, all big-endian; then -1 as int16.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
CHUNK_POINTS = 500  # posted points converted and sent at a time by copy_posted
ASYNCHRONOUS_COMMIT = "SET LOCAL synchronous_commit TO off"
_TOUCH_RUN = (
    "UPDATE run SET last_seen_at = %s, last_step = CASE WHEN last_step IS NULL "
    "OR last_step < %s THEN %s ELSE last_step END WHERE id = %s"
)
_READ_SERIES = READ_SERIES.replace("{1}", "%s") + " = ANY(%s)"


def driver_connection(connection: Connection) -> psycopg.Connection[tuple[object, ...]]:
    """The psycopg 3 connection under a SQLAlchemy one.

    Raises:
        TypeError: Another driver (``database_url`` only makes ``postgresql+psycopg`` ones).
    """
    raw = connection.connection.driver_connection
    if not isinstance(raw, psycopg.Connection):
        raise TypeError(f"PostgreSQL ingest needs a psycopg 3 connection, not "
                        f"{type(raw).__name__}")
    return raw


def touch_and_read_series(
    connection: Connection, *, run_id: int, max_step: int | None, now: float,
    keys: Sequence[str],
) -> dict[str, Known] | None:
    """``ingest.touch_and_read_series`` in one round trip (psycopg's pipeline mode), the
    first of the ingest transaction: it also makes the transaction's commit asynchronous
    (:meth:`~emaboard_server.app.core.db.Database.ingesting`). The ``UPDATE`` takes the
    run's row lock, then the ``SELECT`` runs, in a snapshot of its own, after it.

    Returns:
        The series id and latest stored step of each of ``keys`` that the run has; None when
        the run does not exist.
    """
    raw = driver_connection(connection)
    with raw.cursor() as touch, raw.cursor() as series:
        with raw.pipeline():  # its end sends BEGIN and the three, and waits for the results
            touch.execute(ASYNCHRONOUS_COMMIT)
            touch.execute(_TOUCH_RUN, (now, max_step, max_step, run_id))
            series.execute(_READ_SERIES, (run_id, list(keys)))
        if not touch.rowcount:
            return None
        return {str(key): Known(int(series_id), None if step is None else int(step))  # type: ignore[call-overload]
                for key, series_id, step in series.fetchall()}


@contextlib.contextmanager
def copy_points(
    connection: Connection, ids: Mapping[str, int], by_key: Mapping[str, Sequence[Row]]
) -> Iterator[None]:
    """``COPY`` the rows into ``metric_point`` (binary format), key by key: the rows are
    sent on entering; the body of the ``with`` runs while PostgreSQL stores them, and its
    end waits for it.

    Args:
        connection: A connection in the ingest transaction (run row locked).
        ids: The series id of each key.
        by_key: New rows by key: no (key, step) of them is stored yet. Values are floats
            (NaN is written as NULL).

    Raises:
        PointExists: One of them existed after all; the transaction is aborted (roll it back
            and store the batch again with ``ON CONFLICT DO NOTHING``). No savepoint guards
            the copy: it would cost two more round trips on every batch, for a case that the
            run's row lock rules out.
    """
    data = copy_data(ids, by_key)
    raw = driver_connection(connection)
    try:
        with raw.cursor() as cursor:
            # flush_threshold=0: every byte is on its way when write() returns.
            with cursor.copy(COPY_POINTS, writer=LibpqWriter(cursor, flush_threshold=0)) as copy:
                copy.write(data)
                yield
    except psycopg.errors.UniqueViolation as exc:
        raise PointExists(str(exc)) from exc


@contextlib.contextmanager
def copy_posted(
    connection: Connection, *, run_id: int, points: Sequence[PointIn], now: float
) -> Iterator[Columns]:
    """Store the posted points as they are, betting that none is stored yet nor posted twice
    (a run streaming forward): the run is touched, the series ids read (new keys get one),
    and the points sent to ``COPY`` :data:`CHUNK_POINTS` at a time as they are converted;
    the body of the ``with`` runs while PostgreSQL stores them, and its end waits for it.

    The primary key refuses a (series, step) that exists, so when this succeeds no point was
    stored before nor repeated in the batch: each is new, and none is a conflict. PostgreSQL
    starts on the first chunk while Python converts the next ones, and the server's own
    bookkeeping of the batch (the ``latest_metric`` rows) runs in the body, also while
    PostgreSQL works.

    Args:
        connection: A connection at the start of the ingest transaction.
        run_id: The run.
        points: The posted points (at least one); ``wall_time`` None is ``now``.
        now: The server's receive time (Unix s).

    Yields:
        The points as columns (:class:`~emaboard_server.app.posted.Columns`).

    Raises:
        RunNotFound: No run has this id.
        PointExists: The bet was lost (a point is stored already, or posted twice); the
            transaction is aborted: roll it back and store the batch the careful way.
    """
    keys = list(dict.fromkeys([p["key"] for p in points]))
    known = touch_and_read_series(connection, run_id=run_id, now=now, keys=keys,
                                  max_step=max([p["step"] for p in points]))
    if known is None:
        raise RunNotFound
    ids = {key: series.series_id for key, series in known.items()}
    if len(ids) < len(keys):
        ids |= create_series(connection, run_id, [key for key in keys if key not in ids])
    columns = Columns()
    raw = driver_connection(connection)
    try:
        with raw.cursor() as cursor:
            with cursor.copy(COPY_POINTS, writer=LibpqWriter(cursor, flush_threshold=0)) as copy:
                copy.write(SIGNATURE)
                for start in range(0, len(points), CHUNK_POINTS):
                    chunk = columns.add(points[start:start + CHUNK_POINTS], ids, now)
                    copy.write(_rows_data(*chunk))
                copy.write(TRAILER)
                yield columns
    except psycopg.errors.UniqueViolation as exc:
        raise PointExists(str(exc)) from exc


def _rows_data(series: np.ndarray, steps: np.ndarray, values: np.ndarray,
               wall_times: np.ndarray) -> bytes:
    """Columns as binary COPY rows (NaN as NULL)."""
    nan = np.isnan(values)
    if not nan.any():
        return _block(series, steps, values, wall_times)
    keep = ~nan
    return (_block(series[keep], steps[keep], values[keep], wall_times[keep])
            + _block(series[nan], steps[nan], None, wall_times[nan]))


def copy_data(ids: Mapping[str, int], by_key: Mapping[str, Sequence[Row]]) -> bytes:
    """The rows as ``COPY ... (FORMAT BINARY)`` data for columns (series_id int4, step int8,
    value float8, wall_time float8), key by key in the order given."""
    blocks = [SIGNATURE]
    for key, rows in by_key.items():
        _, steps, values, wall_times = zip(*rows, strict=True)
        value = np.array(values, dtype=np.float64)  # (n,)
        nan = np.isnan(value)
        if not nan.any():
            blocks.append(_block(ids[key], steps, value, wall_times))
            continue
        keep = ~nan
        wall = np.array(wall_times, dtype=np.float64)
        step = np.array(steps, dtype=np.int64)
        blocks.append(_block(ids[key], step[keep], value[keep], wall[keep]))
        blocks.append(_block(ids[key], step[nan], None, wall[nan]))
    blocks.append(TRAILER)
    return b"".join(blocks)


_ROW = [("fields", ">i2"), ("series_len", ">i4"), ("series", ">i4"), ("step_len", ">i4"),
        ("step", ">i8"), ("value_len", ">i4"), ("value", ">f8"), ("wall_len", ">i4"),
        ("wall", ">f8")]
ROW = np.dtype(_ROW)
ROW_NULL_VALUE = np.dtype([field for field in _ROW if field[0] != "value"])


def _block(series_ids: object, steps: Sequence[int] | np.ndarray,
           values: np.ndarray | None, wall_times: object) -> bytes:
    """Binary COPY rows (``values`` None: every value NULL); ``series_ids``: one id for every
    row, or one per row."""
    rows = np.empty(len(steps), dtype=ROW if values is not None else ROW_NULL_VALUE)
    rows["fields"], rows["series_len"], rows["series"] = 4, 4, series_ids
    rows["step_len"], rows["step"] = 8, steps
    rows["value_len"] = -1 if values is None else 8
    if values is not None:
        rows["value"] = values
    rows["wall_len"], rows["wall"] = 8, wall_times
    return rows.tobytes()

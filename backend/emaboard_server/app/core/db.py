"""Engine, sessions and schema upgrades.

SQLite gets WAL mode, ``synchronous=NORMAL``, a ``busy_timeout`` and foreign keys on every
connection. Writers inside this process take :attr:`Database.write_lock` (SQLite allows one
writer at a time; waiting on a Python lock is cheaper than SQLite's sleep-and-retry busy loop).
PostgreSQL (``postgresql://...``, through psycopg 3) needs no lock: ingest serialises the
writers of one run on the run's row. Its metric-point transactions commit asynchronously
(:meth:`Database.ingesting`), every other write synchronously.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Checkpoints run in a thread of their own (WalCheckpointer); SQLite's own, at commit, stays
# as the safety net should that thread fall behind: at 10,000 pages (~40 MB) of WAL.
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
CHECKPOINT_INTERVAL_S = 0.5
ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
    cursor.close()


def database_url(url: str) -> URL:
    """``url`` parsed, PostgreSQL's driver spelled out: ``postgresql://`` and ``postgres://``
    mean ``postgresql+psycopg://`` (psycopg 3, whose ``COPY`` ingest uses).

    Raises:
        ValueError: Not a SQLAlchemy URL, another database than SQLite or PostgreSQL, or
            another PostgreSQL driver; the message names the remedy.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"Invalid database URL {url!r}: expected sqlite:///<file> or "
                         "postgresql://user:password@host:port/database") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    if backend == "postgresql" and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    shown = parsed.render_as_string(hide_password=True)
    if backend == "postgresql":
        raise ValueError(f"Unsupported PostgreSQL driver {driver!r} in {shown}: use "
                         "postgresql+psycopg:// (psycopg 3: pip install 'emaboard[postgres]')")
    raise ValueError(f"Unsupported database {backend!r} in {shown}: emaboard stores into "
                     "SQLite (the default) or PostgreSQL (postgresql://...)")


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; SQLite connections get the pragmas above.

    Args:
        url: A SQLite or PostgreSQL URL (:func:`database_url`).

    Returns:
        The engine. For a SQLite file, its parent directory is created.

    Raises:
        ValueError: An unsupported URL (:func:`database_url`).
    """
    parsed = database_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        # Fail in 10 s rather than hang on an unreachable host.
        connect_args = {"connect_timeout": 10}
    engine = create_engine(parsed, future=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def alembic_config(engine: Engine, data_dir: Path | None = None) -> Config:
    """An Alembic config built in code (no ``alembic.ini``), bound to ``engine``; migrations
    that remove rows with files also remove the files under ``data_dir`` when it is given."""
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["engine"] = engine
    if data_dir is not None:
        config.attributes["data_dir"] = data_dir
    return config


def upgrade_database(engine: Engine, data_dir: Path | None = None) -> None:
    """Run ``alembic upgrade head`` on ``engine`` (creates the schema on a new database)."""
    command.upgrade(alembic_config(engine, data_dir), "head")
    logger.debug("database at %s upgraded to head", engine.url.render_as_string())


class WalCheckpointer:
    """Copies SQLite's write-ahead log into the database file from a thread of its own.

    By default SQLite checkpoints in the commit that takes the WAL past 1,000 pages: that
    commit copies and syncs them (10-45 ms at full ingest load, measured) while every other
    writer waits on the write lock, the largest part of the ingest latency's tail. Here a
    ``PASSIVE`` checkpoint (it never waits for, nor blocks, a reader or a writer) runs every
    :data:`CHECKPOINT_INTERVAL_S` seconds instead.
    """

    def __init__(self, engine: Engine, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.engine, self.interval_s = engine, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the checkpoint thread."""
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with self.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception as exc:  # a disk full, a locked file: the next try may do
                logger.warning("WAL checkpoint failed: %s", exc)


class Database:
    """The engine, a session factory and the in-process write lock of one server."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.write_lock = threading.Lock() if self.is_sqlite else None

    @contextlib.contextmanager
    def writing(self) -> Iterator[Session]:
        """A session in one transaction, committed on success, under the write lock."""
        lock = self.write_lock or contextlib.nullcontext()
        with lock, self.sessions() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def ingesting(self) -> Iterator[Connection]:
        """A bare Core connection in one transaction under the write lock, for metric points.

        On PostgreSQL its commit does not wait for the write-ahead log to reach the disk
        (``synchronous_commit=off``, set by ingest's first round trip, with the run's update:
        ``ingest_postgres.touch_and_read_series``): a power cut or a crash of PostgreSQL
        itself can lose the points of the last ~0.6 s (3 x ``wal_writer_delay``), never half
        a batch. That is SQLite's own default here (WAL with ``synchronous=NORMAL`` syncs at
        checkpoints only), and a crash of the emaboard server loses nothing. Every other
        transaction commits synchronously. Measured at 48 k points/s with 2 processes, the
        asynchronous commit alone took the ingest-to-websocket p99 from 183-241 to 149-182
        ms (docs/benchmarks.md).
        """
        lock = self.write_lock or contextlib.nullcontext()
        with lock, self.engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for reads (no lock; WAL readers never block the writer)."""
        with self.sessions() as session:
            yield session

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

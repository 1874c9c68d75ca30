"""Engine, sessions and schema upgrades.

SQLite gets WAL mode, ``synchronous=NORMAL``, a ``busy_timeout`` and foreign keys on every
connection. Writers inside this process take :attr:`Database.write_lock` (SQLite allows one
writer at a time; waiting on a Python lock is cheaper than SQLite's sleep-and-retry busy loop).
PostgreSQL (``postgresql://...``, through psycopg 3) needs no lock: ingest serialises the
writers of one run on the run's row.
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
ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
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
    engine = create_engine(database_url(url), future=True)
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
    def writing_core(self) -> Iterator[Connection]:
        """Like :meth:`writing`, as a bare Core connection (the ingest path: no ORM session)."""
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

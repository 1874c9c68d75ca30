from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from emaboard_server.app.core.db import (
    Database,
    WalCheckpointer,
    alembic_config,
    upgrade_database,
)
from emaboard_server.app.models import Base, MetricPoint, MetricSeries, Run
from tests.utils.databases import both_databases


@pytest.fixture
def url(database_url: str, tmp_path: Path) -> str:
    """A SQLite file under ``tmp_path``, or a new PostgreSQL database."""
    return database_url or f"sqlite:///{tmp_path / 'x.db'}"


@both_databases
def test_migrated_schema_matches_the_orm_metadata(url: str, tmp_path: Path) -> None:
    db = Database(url)
    upgrade_database(db.engine)
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    db.dispose()


@both_databases
def test_upgrade_is_idempotent_and_at_head(url: str, tmp_path: Path) -> None:
    db = Database(url)
    upgrade_database(db.engine)
    upgrade_database(db.engine)
    head = ScriptDirectory.from_config(alembic_config(db.engine)).get_current_head()
    with db.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head
        assert set(inspect(connection).get_table_names()) >= {
            "run",
            "metric_point",
            "latest_metric",
            "snapshot",
            "alembic_version",
        }
    db.dispose()


def test_sqlite_pragmas_are_set(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")
    with db.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 10_000
        assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar() == 10_000
    assert db.write_lock is not None
    db.dispose()


def test_the_checkpointer_thread_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = Database(f"sqlite:///{path}")
    with db.writing() as session:
        session.execute(text("CREATE TABLE t (x BLOB)"))
    with db.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with db.writing() as session:  # 2 MB: 512 pages, under SQLite's own threshold
        for _ in range(64):
            session.execute(text("INSERT INTO t VALUES (randomblob(32768))"))
    time.sleep(0.3)
    assert path.stat().st_size == size  # in the WAL only: nothing checkpointed it
    checkpointer = WalCheckpointer(db.engine, interval_s=0.05)
    checkpointer.start()
    deadline = time.monotonic() + 10
    while path.stat().st_size < size + (2 << 20) and time.monotonic() < deadline:
        time.sleep(0.02)
    checkpointer.stop()
    assert path.stat().st_size >= size + (2 << 20)
    assert checkpointer._thread is not None and not checkpointer._thread.is_alive()
    db.dispose()


@pytest.mark.parametrize("database", ["postgres"])
def test_only_metric_point_transactions_commit_asynchronously(url: str) -> None:
    # The test cluster runs with synchronous_commit=off; this database gets PostgreSQL's
    # default back, as a production server has it.
    database = url.rsplit("/", 1)[1]
    db = Database(url)
    with db.engine.connect() as connection:
        connection.exec_driver_sql(f"ALTER DATABASE {database} SET synchronous_commit = on")
        connection.commit()
    db.dispose()

    def setting(connection: Any) -> str:
        return str(connection.exec_driver_sql("SHOW synchronous_commit").scalar())

    upgrade_database(db.engine)
    with db.writing() as session:
        session.add(Run(project="p", name="r", config={}, created_at=0.0, last_seen_at=0.0,
                        summary={}))
    with db.ingesting() as connection:  # ingest's first round trip sets it
        from emaboard_server.app.ingest import prepare, touch_and_read_series

        batch = prepare([{"key": "k", "step": 1, "value": 1.0}], 0.0)  # type: ignore[list-item]
        assert touch_and_read_series(connection, run_id=1, batch=batch, now=0.0) == {}
        assert setting(connection) == "off"
    with db.writing() as session:
        assert setting(session.connection()) == "on"
    with db.engine.connect() as connection:  # the pooled connection: SET LOCAL ended
        assert setting(connection) == "on"
    db.dispose()


@both_databases
def test_nan_round_trips_through_the_orm(url: str, tmp_path: Path) -> None:
    db = Database(url)
    upgrade_database(db.engine)
    with db.writing() as session:
        run = Run(
            project="p",
            name="r",
            config={},
            status="running",
            created_at=0.0,
            last_seen_at=0.0,
            summary={},
        )
        session.add(run)
        session.flush()
        series = MetricSeries(run_id=run.id, key="k")
        session.add(series)
        session.flush()
        session.add_all(
            [
                MetricPoint(series_id=series.id, step=s, value=v, wall_time=0.0)
                for s, v in enumerate([math.nan, math.inf, -math.inf, 1.5])
            ]
        )
    with db.reading() as session:
        got = [p.value for p in session.query(MetricPoint).order_by(MetricPoint.step)]
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, 1.5]
    db.dispose()


def test_unsupported_paramstyle_is_refused() -> None:
    import pytest

    from emaboard_server.app.sql_text import render

    with pytest.raises(
        NotImplementedError,
        match="Unsupported DBAPI paramstyle 'numeric': expected qmark, format or pyformat",
    ):
        render("numeric", "INSERT INTO t VALUES ({1})")
    assert render("format", "SELECT {1}, {4}") == "SELECT %s, %s, %s, %s, %s"


def test_one_alembic_head() -> None:
    script = ScriptDirectory.from_config(alembic_config(Database("sqlite://").engine))
    assert len(script.get_heads()) == 1, script.get_heads()


@both_databases
def test_0002_keeps_the_first_of_duplicate_snapshots_and_removes_the_rest(
    url: str, tmp_path: Path
) -> None:
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    db = Database(url)
    command.upgrade(alembic_config(db.engine), "0001")  # as stored before issue 14
    data_dir = tmp_path / "data"
    (data_dir / "snapshots" / "1").mkdir(parents=True)
    insert = text(
        "INSERT INTO snapshot (run_id, averager, step, sha256, size_bytes, stored_path, "
        "metadata, created_at) VALUES (1, :averager, :step, 'x', 1, :path, '{}', 0)")
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO run (id, project, name, config, status, created_at, last_seen_at, "
            "summary) VALUES (1, 'p', 'r', '{}', 'running', 0, 0, '{}')"))
        for n, (averager, step) in enumerate([("swa", 5), ("swa", 5), ("ema", 5), ("swa", 5)]):
            path = f"snapshots/1/{n}.safetensors"
            (data_dir / path).write_bytes(b"x")
            connection.execute(insert, {"averager": averager, "step": step, "path": path})
    upgrade_database(db.engine, data_dir)
    with db.engine.begin() as connection:
        rows = connection.execute(text("SELECT id, averager FROM snapshot ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, "swa"), (3, "ema")]
        with pytest.raises(IntegrityError):
            connection.execute(insert, {"averager": "swa", "step": 5, "path": "p"})
    assert sorted(p.name for p in (data_dir / "snapshots" / "1").iterdir()) == [
        "0.safetensors", "2.safetensors"]
    db.dispose()


@both_databases
def test_0004_drops_the_points_foreign_key_and_keeps_every_point(url: str) -> None:
    from alembic import command

    db = Database(url)
    command.upgrade(alembic_config(db.engine), "0003")
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO run (id, project, name, config, status, created_at, last_seen_at, "
            "summary) VALUES (1, 'p', 'r', '{}', 'running', 0, 0, '{}')"))
        connection.execute(text(
            "INSERT INTO metric_point (run_id, key, step, value, wall_time) "
            "VALUES (1, 'a', :step, :value, 0)"),
            [{"step": s, "value": None if s == 3 else s / 2} for s in range(5)])
        assert inspect(connection).get_foreign_keys("metric_point")
    upgrade_database(db.engine)
    with db.engine.begin() as connection:
        assert inspect(connection).get_foreign_keys("metric_point") == []
        rows = connection.execute(text(
            "SELECT step, value FROM metric_point ORDER BY step")).all()
        assert [tuple(row) for row in rows] == [(0, 0.0), (1, 0.5), (2, 1.0), (3, None),
                                                (4, 2.0)]
        if db.is_sqlite:  # still one b-tree
            sql = connection.execute(text(
                "SELECT sql FROM sqlite_master WHERE name = 'metric_point'")).scalar()
            assert "WITHOUT ROWID" in sql
    db.dispose()


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
    ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
    ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_postgresql_urls_use_psycopg_3(url: str, expected: str) -> None:
    from emaboard_server.app.core.db import database_url

    assert database_url(url).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql+psycopg2://u:secret@h/d",
     "Unsupported PostgreSQL driver 'psycopg2' in postgresql+psycopg2://u:***@h/d: use "
     "postgresql+psycopg:// (psycopg 3: pip install 'emaboard[postgres]')"),
    ("mysql://u@h/d", "Unsupported database 'mysql' in mysql://u@h/d: emaboard stores into "
     "SQLite (the default) or PostgreSQL (postgresql://...)"),
    ("not a url", "Invalid database URL 'not a url': expected sqlite:///<file> or "
     "postgresql://user:password@host:port/database"),
])
def test_other_databases_are_refused_naming_the_remedy(url: str, message: str) -> None:
    from emaboard_server.app.core.db import database_url

    with pytest.raises(ValueError) as info:
        database_url(url)
    assert str(info.value) == message


@both_databases
def test_0007_stores_points_by_series_id_and_keeps_every_point(url: str) -> None:
    from alembic import command

    from emaboard_server.app.read_points import read_series

    db = Database(url)
    config = alembic_config(db.engine)
    command.upgrade(config, "0006")
    points = [(run_id, key, step, None if step == 3 else step / 2 + run_id)
              for run_id in (1, 2) for key in ("a", "b/c") for step in range(5)]
    with db.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO run (id, project, name, config, status, created_at, last_seen_at, "
            "summary) VALUES (:id, 'p', :name, '{}', 'running', 0, 0, '{}')"),
            [{"id": 1, "name": "r1"}, {"id": 2, "name": "r2"}])
        connection.execute(text(
            "INSERT INTO metric_point (run_id, key, step, value, wall_time) "
            "VALUES (:run_id, :key, :step, :value, :step)"),
            [dict(zip(("run_id", "key", "step", "value"), p, strict=True)) for p in points]
            + [{"run_id": 99, "key": "a", "step": 0, "value": 1.0}])  # a deleted run's
    upgrade_database(db.engine)
    with db.engine.begin() as connection:
        assert connection.execute(text(
            "SELECT run_id, key FROM metric_series ORDER BY id")).all() == [
            (1, "a"), (1, "b/c"), (2, "a"), (2, "b/c")]
        for run_id in (1, 2):
            for key in ("a", "b/c"):
                got = read_series(connection, run_id=run_id, key=key, min_step=None,
                                  max_step=None)
                assert list(got.steps) == [0, 1, 2, 3, 4]
                assert list(got.wall_times) == [0.0, 1.0, 2.0, 3.0, 4.0]
                expected = [None if p[3] is None else p[3] for p in points
                            if p[:2] == (run_id, key)]
                assert [None if math.isnan(v) else v for v in got.values] == expected
        assert connection.execute(text("SELECT COUNT(*) FROM metric_point")).scalar() == 20
        if db.is_sqlite:
            sql = connection.execute(text(
                "SELECT sql FROM sqlite_master WHERE name = 'metric_point'")).scalar()
            assert "WITHOUT ROWID" in sql
    command.downgrade(config, "0006")
    with db.engine.begin() as connection:
        rows = connection.execute(text(
            "SELECT run_id, key, step, value FROM metric_point ORDER BY run_id, key, step"))
        assert [tuple(row) for row in rows] == points
    db.dispose()


@both_databases
def test_0008_adds_a_creation_id_unique_per_project_and_keeps_every_run(url: str) -> None:
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    db = Database(url)
    config = alembic_config(db.engine)
    command.upgrade(config, "0007")
    insert = text(
        "INSERT INTO run (project, name, config, status, created_at, last_seen_at, summary) "
        "VALUES (:project, :name, '{}', 'running', 0, 0, '{}')")
    with db.engine.begin() as connection:
        connection.execute(insert, [{"project": "p", "name": "r1"}, {"project": "p", "name": "r2"}])
    upgrade_database(db.engine)
    with db.engine.begin() as connection:
        assert connection.execute(text(
            "SELECT name, creation_id FROM run ORDER BY id")).all() == [("r1", None), ("r2", None)]
        set_id = text("UPDATE run SET creation_id = :cid WHERE name = :name")
        connection.execute(set_id, {"cid": "c1", "name": "r1"})
        connection.execute(text(
            "INSERT INTO run (project, name, config, status, created_at, last_seen_at, summary, "
            "creation_id) VALUES ('q', 'r1', '{}', 'running', 0, 0, '{}', 'c1')"))  # other project
    with pytest.raises(IntegrityError), db.engine.begin() as connection:
        connection.execute(text("UPDATE run SET creation_id = 'c1' WHERE name = 'r2'"))
    command.downgrade(config, "0007")
    with db.engine.begin() as connection:
        assert "creation_id" not in {c["name"] for c in inspect(connection).get_columns("run")}
        assert connection.execute(text(
            "SELECT project, name FROM run ORDER BY id")).all() == [("p", "r1"), ("p", "r2"),
                                                                    ("q", "r1")]
    db.dispose()

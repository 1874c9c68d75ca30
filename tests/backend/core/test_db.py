from __future__ import annotations

import math
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from emaboard_server.app.core.db import Database, alembic_config, upgrade_database
from emaboard_server.app.models import Base, MetricPoint, Run


def test_migrated_schema_matches_the_orm_metadata(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade_database(db.engine)
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    db.dispose()


def test_upgrade_is_idempotent_and_at_head(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
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
    assert db.write_lock is not None
    db.dispose()


def test_nan_round_trips_through_the_orm(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
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
        session.add_all(
            [
                MetricPoint(run_id=run.id, key="k", step=s, value=v, wall_time=0.0)
                for s, v in enumerate([math.nan, math.inf, -math.inf, 1.5])
            ]
        )
    with db.reading() as session:
        got = [p.value for p in session.query(MetricPoint).order_by(MetricPoint.step)]
    assert math.isnan(got[0]) and got[1:] == [math.inf, -math.inf, 1.5]
    db.dispose()


def test_unsupported_paramstyle_is_refused() -> None:
    import pytest

    from emaboard_server.app.ingest import _render

    with pytest.raises(
        NotImplementedError,
        match="Unsupported DBAPI paramstyle 'numeric': expected qmark, format or pyformat",
    ):
        _render("numeric", "INSERT INTO t VALUES ({1})")
    assert _render("format", "SELECT {1}, {4}") == "SELECT %s, %s, %s, %s, %s"

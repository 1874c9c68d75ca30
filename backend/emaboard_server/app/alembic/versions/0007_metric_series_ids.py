"""metric_series: each (run, key) gets an integer id; metric_point stores it instead of both.

The primary key of metric_point was (run_id, key, step): every index insertion of an ingest
compared key texts (with the database's collation on PostgreSQL), ~20 % of PostgreSQL's
time in a 5,000-point ``COPY``, and every row carried the key. It is now (series_id, step):
per point 45 B less on disk and 0.6-1.0 µs less of PostgreSQL's time (docs/benchmarks.md,
issue 13). The table is rebuilt on both databases (a copy of every point, once); points of
runs that no longer exist are left behind (none can be read).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 15:00:00
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)


def _value_columns() -> list[sa.Column[float]]:
    return [sa.Column("value", sa.Float(precision=53), nullable=True),
            sa.Column("wall_time", sa.Float(precision=53), nullable=False)]


def _replace_points(new_table: str) -> None:
    """Drop metric_point and give ``new_table`` its name (and its primary key's, on
    PostgreSQL)."""
    op.drop_table("metric_point")
    op.rename_table(new_table, "metric_point")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {new_table}_pkey RENAME TO metric_point_pkey")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM metric_point LIMIT 1")).first():
        logger.warning("rebuilding the metric_point table with integer series ids (once; a "
                       "large database takes a while)")
    op.create_table(
        "metric_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "key", name="uq_metric_series_run_key"),
        sqlite_autoincrement=True,
    )
    op.execute(
        "INSERT INTO metric_series (run_id, key) SELECT run_id, key FROM "
        "(SELECT run_id, key FROM metric_point UNION SELECT run_id, key FROM latest_metric) "
        "AS series WHERE run_id IN (SELECT id FROM run) ORDER BY run_id, key")
    op.create_table(
        "metric_point_by_series",
        sa.Column("series_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("step", sa.BigInteger(), autoincrement=False, nullable=False),
        *_value_columns(),
        sa.PrimaryKeyConstraint("series_id", "step"),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO metric_point_by_series (series_id, step, value, wall_time) "
        "SELECT s.id, m.step, m.value, m.wall_time FROM metric_point m "
        "JOIN metric_series s ON s.run_id = m.run_id AND s.key = m.key")
    _replace_points("metric_point_by_series")


def downgrade() -> None:
    op.create_table(
        "metric_point_by_key",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        *_value_columns(),
        sa.PrimaryKeyConstraint("run_id", "key", "step"),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO metric_point_by_key (run_id, key, step, value, wall_time) "
        "SELECT s.run_id, s.key, m.step, m.value, m.wall_time FROM metric_point m "
        "JOIN metric_series s ON s.id = m.series_id")
    _replace_points("metric_point_by_key")
    op.drop_table("metric_series")

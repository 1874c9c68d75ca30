"""metric_point without its foreign key to run: deleting a run deletes its points itself.

PostgreSQL checks a foreign key with a trigger per inserted row: 3.5-5 µs per point, more
than the ``COPY`` that stores it (issue 13). Points only ever enter through ingest, which
locks the run's row first (a deleted run stores nothing), and ``crud.delete_run`` deletes the
run's points after its row. On SQLite the table is rebuilt (Alembic's batch mode: a copy of
every point, once).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 11:00:00
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _foreign_keys() -> list[str | None]:
    inspector = sa.inspect(op.get_bind())
    return [fk["name"] for fk in inspector.get_foreign_keys("metric_point")]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if bind.execute(sa.text("SELECT 1 FROM metric_point LIMIT 1")).first():
            logger.warning("rebuilding the metric_point table without its foreign key to run "
                           "(once; a large database takes a while)")
        # SQLite's foreign keys have no names: the naming convention gives the reflected one
        # a name to drop; batch mode rebuilds the table (WITHOUT ROWID, as it was) without it.
        with op.batch_alter_table(
            "metric_point", recreate="always", naming_convention=NAMING,
            table_kwargs={"sqlite_with_rowid": False},
        ) as batch_op:
            batch_op.drop_constraint("fk_metric_point_run_id_run", type_="foreignkey")
        return
    for name in _foreign_keys():
        if name:  # PostgreSQL names every constraint (metric_point_run_id_fkey)
            op.drop_constraint(name, "metric_point", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("metric_point", table_kwargs={"sqlite_with_rowid": False}) as batch_op:
        batch_op.create_foreign_key(
            "fk_metric_point_run_id_run", "run", ["run_id"], ["id"], ondelete="CASCADE")

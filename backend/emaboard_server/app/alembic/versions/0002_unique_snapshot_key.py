"""(run, averager, step) identifies a snapshot: a unique constraint, duplicates removed.

Before it, a client retry after a stalled answer stored the same snapshot again (one
268 MB snapshot became 101 rows and 27.2 GB). Of each group of rows with the same key the
first (lowest id) is kept; the others' rows are deleted, and their files too when the
server passes its data directory (``config.attributes["data_dir"]``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 09:30:00
"""
import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)


def _remove_duplicates() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT id, stored_path FROM snapshot WHERE id NOT IN "
        "(SELECT MIN(id) FROM snapshot GROUP BY run_id, averager, step)")).fetchall()
    if not rows:
        return
    bind.execute(sa.text(
        "DELETE FROM snapshot WHERE id NOT IN "
        "(SELECT keep FROM (SELECT MIN(id) AS keep FROM snapshot "
        "GROUP BY run_id, averager, step) AS kept)"))
    data_dir = context.config.attributes.get("data_dir")
    for _, stored_path in rows:
        if data_dir is not None:
            (Path(data_dir) / stored_path).unlink(missing_ok=True)
    logger.warning("removed %d duplicate snapshot rows (same run, averager and step)%s",
                   len(rows), "" if data_dir is not None else "; their files were left")


def upgrade() -> None:
    _remove_duplicates()
    with op.batch_alter_table('snapshot', schema=None) as batch_op:
        batch_op.create_unique_constraint(
            'uq_snapshot_run_averager_step', ['run_id', 'averager', 'step'])


def downgrade() -> None:
    with op.batch_alter_table('snapshot', schema=None) as batch_op:
        batch_op.drop_constraint('uq_snapshot_run_averager_step', type_='unique')

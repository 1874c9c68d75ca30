"""Snapshot kind: "snapshot" or "posthoc" (post-hoc EMA snapshots, kept under a budget).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('snapshot', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='snapshot'))
        batch_op.create_index('ix_snapshot_run_kind', ['run_id', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('snapshot', schema=None) as batch_op:
        batch_op.drop_index('ix_snapshot_run_kind')
        batch_op.drop_column('kind')

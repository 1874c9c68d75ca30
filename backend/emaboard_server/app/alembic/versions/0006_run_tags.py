"""Run tags: one row per (run, tag), the tag indexed for the runs page's filter.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 11:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'run_tag',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['run.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'tag'),
    )
    op.create_index('ix_run_tag_tag', 'run_tag', ['tag'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_run_tag_tag', table_name='run_tag')
    op.drop_table('run_tag')

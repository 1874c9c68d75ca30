"""run.creation_id: the id the client generated for the training that created the run.

A retried ``POST /api/runs`` (its reply lost after the commit) used to find the run's name
taken and, with ``resume="never"``, create ``name-2``: the training streamed there and an
empty ``name`` stayed. The client now sends a creation id once per spool; the server stores
it here (unique per project, NULL for runs created without one) and answers a create whose
creation id a run already has with that run. Adding a nullable column and an index needs no
table rebuild on either database.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('run', sa.Column('creation_id', sa.String(length=64), nullable=True))
    op.create_index('ix_run_project_creation_id', 'run', ['project', 'creation_id'],
                    unique=True)


def downgrade() -> None:
    op.drop_index('ix_run_project_creation_id', table_name='run')
    op.drop_column('run', 'creation_id')  # SQLite 3.35+ drops a column in place

"""live_event: websocket messages one server process stores for the others (live fan-out).

On PostgreSQL the table is UNLOGGED (no write-ahead log; emptied after a crash, which is
fine for messages kept seconds) and its ``body`` is stored uncompressed (``STORAGE
EXTERNAL``: the messages are read once, compressing them cost more than it saved).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "live_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("project", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        prefixes=["UNLOGGED"] if postgres else [],
    )
    if postgres:
        op.execute("ALTER TABLE live_event ALTER COLUMN body SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("live_event")

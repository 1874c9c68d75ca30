"""Alembic environment: runs online against the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

from emaboard_server.app.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Migrate through the server's engine, or one built from ``sqlalchemy.url``."""
    engine = context.config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()

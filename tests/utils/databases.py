"""The databases the server tests run against, as a parametrisation.

Tests that exercise database behaviour take the ``database`` fixture (``"sqlite"`` unless
parametrised) through ``settings`` / ``database_url``; ``@both_databases`` runs them on
SQLite and on the session's throw-away PostgreSQL cluster (``-k postgres`` selects those).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

DATABASES = ("sqlite", "postgres")
both_databases = pytest.mark.parametrize("database", DATABASES)


@contextlib.contextmanager
def server_env(request: pytest.FixtureRequest, database: str) -> Iterator[dict[str, str]]:
    """The environment that points a server process at ``database``: nothing for SQLite (the
    file in its data_dir), ``EMABOARD_DATABASE_URL`` of an empty PostgreSQL database
    (recycled afterwards) otherwise."""
    if database == "sqlite":
        yield {}
        return
    cluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database()
    try:
        yield {"EMABOARD_DATABASE_URL": url}
    finally:
        cluster.recycle_database(url)

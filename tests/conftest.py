from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from emaboard_server.local_server import LocalServer
from tests.e2e.browser import close_shared_browser
from tests.utils.postgres import PostgresCluster


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Close Chromium after the last of consecutive browser tests: while Playwright's sync
    driver runs, its event loop counts as running and a later ``asyncio.run`` fails (in
    another test order, e.g. pytest-xdist's, a browser test may come before any test)."""
    yield  # the test's fixtures (its browser context) are torn down first
    if nextitem is None or "browser" not in getattr(nextitem, "fixturenames", ()):
        close_shared_browser()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A real emaboard server (uvicorn subprocess) on a free loopback port, its own data_dir,
    for a test that kills, restarts or counts what a server holds."""
    with LocalServer(data_dir=tmp_path / "server-data") as server:
        yield server


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One real server for the whole session (starting one costs seconds), for tests that
    only create runs under names of their own and read those back: the client, integration,
    post-hoc and browser tests. A test that kills or configures a server, or lists every
    run it holds, starts its own (``live_server``)."""
    with LocalServer(data_dir=tmp_path_factory.mktemp("shared-server")) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throw-away PostgreSQL cluster for the whole session, started on first use."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The URL of an empty PostgreSQL database, emptied again after the test."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.recycle_database(url)


@pytest.fixture
def database() -> str:
    """The database a test runs against: ``"sqlite"`` unless parametrised (both_databases)."""
    return "sqlite"


@pytest.fixture
def database_url(database: str, request: pytest.FixtureRequest) -> str:
    """``""`` for SQLite (the default file inside ``data_dir``), else a new PostgreSQL
    database's URL."""
    if database == "sqlite":
        return ""
    return str(request.getfixturevalue("postgres_url"))

"""Browser fixtures for the dashboard tests: one headless Chromium for each stretch of
consecutive browser tests, a fresh context per test (downloads accepted), uncaught page errors
fail the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from emaboard_server.local_server import LocalServer
from tests.e2e.browser import PageErrors, shared_browser

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
VIEWPORT = {"width": 1440, "height": 900}
# Waits on page state, generous for a loaded 2-core machine: a reconnect alone may take the
# server's restart plus the page's 5 s backoff.
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def browser() -> Browser:
    """The shared Chromium (tests/conftest.py closes it after the last of consecutive
    browser tests)."""
    return shared_browser()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page whose uncaught JavaScript errors fail the test at teardown."""
    page = context.new_page()
    errors = PageErrors(page)
    yield page
    errors.check()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``tests/e2e/artifacts/`` (git-ignored): screenshots of the pages under test."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture(scope="session")
def server(shared_server: LocalServer) -> LocalServer:
    """The session's server for the browser tests; tests that kill or configure a server
    start their own. Tests keep apart by creating their own runs."""
    return shared_server

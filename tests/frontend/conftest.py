"""Fixtures for testing the dashboard's pure ES modules inside Chromium, without the backend.

``frontend/`` is served by a stdlib static file server on a free port; tests open a page on
that origin and ``import()`` the modules in ``page.evaluate``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.browser import PageErrors, acquire_browser, release_browser

FRONTEND_DIR = Path(__file__).resolve().parents[2] / "frontend"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def static_url() -> Iterator[str]:
    """Base URL of a static server holding ``frontend/``."""
    handler = functools.partial(QuietHandler, directory=str(FRONTEND_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def module_browser() -> Iterator[Browser]:
    yield acquire_browser()
    release_browser()


@pytest.fixture
def module_page(module_browser: Browser, static_url: str) -> Iterator[Page]:
    """A page on the static origin (``/css/style.css``), ready for ``import('/js/...')``."""
    context = module_browser.new_context()
    page = context.new_page()
    errors = PageErrors(page)
    page.goto(static_url + "/css/style.css")
    yield page
    context.close()
    errors.check()

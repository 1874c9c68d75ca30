"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by Playwright.

Never ``playwright install``: the browser comes from apt (``scripts/test`` installs it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str:
    """The Chromium binary: ``$EMABOARD_CHROMIUM``, else ``/usr/bin/chromium``, else PATH."""
    for candidate in (os.environ.get("EMABOARD_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium not found: install it with `apt-get install chromium`")
    return found


def launch_chromium(playwright: Playwright) -> Browser:
    """A headless Chromium from the system (no Playwright-downloaded browser)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


_shared: dict[str, Any] = {}


def shared_browser() -> Browser:
    """The one Chromium of this process, launched on first use (Playwright's sync API allows
    one driver at a time). It stays open across consecutive browser tests; close it with
    :func:`close_shared_browser` before a test that runs an event loop of its own."""
    if not _shared:
        playwright = sync_playwright().start()
        _shared.update(playwright=playwright, browser=launch_chromium(playwright))
    return _shared["browser"]  # type: ignore[no-any-return]


def close_shared_browser() -> None:
    """Close the shared Chromium, if open, and stop Playwright's driver: while it runs, its
    event loop counts as running in the main thread and ``asyncio.run`` refuses to start."""
    if _shared:
        _shared["browser"].close()
        _shared["playwright"].stop()
        _shared.clear()


class PageErrors:
    """Collects uncaught exceptions and unhandled rejections of a page (``pageerror``)."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def check(self) -> None:
        if self.errors:
            raise AssertionError("JavaScript errors in the page:\n" + "\n".join(self.errors))

"""Playwright helpers for the run page: open it, read and wait for its charts' traces."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from emaboard_server.local_server import LocalServer

TRACE_LENGTHS = """(id) => Object.fromEntries(
    document.getElementById(id).data.map(trace => [trace.name, trace.x.length]))"""


def open_run_page(page: Page, server: LocalServer, run_id: int) -> None:
    """Open the run page and wait until every view is drawn and the websocket is live."""
    page.goto(f"{server.url}/run.html?id={run_id}")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def trace_lengths(page: Page, chart_id: str) -> dict[str, int]:
    """Legend name -> number of points of each trace of a chart."""
    return dict(page.evaluate(TRACE_LENGTHS, chart_id))


def wait_trace_lengths(page: Page, chart_id: str, length: int) -> None:
    """Wait until every trace of the chart holds ``length`` points."""
    page.wait_for_function(
        "([id, n]) => { const data = document.getElementById(id)?.data || [];"
        " return data.length > 0 && data.every(trace => trace.x.length === n); }",
        arg=[chart_id, length],
    )


def chart_data(page: Page, chart_id: str) -> list[dict[str, Any]]:
    """The chart's traces as Plotly holds them (name, x, y, mode, type, line, opacity)."""
    return list(page.evaluate(
        """id => document.getElementById(id).data.map(t => ({name: t.name, x: t.x, y: t.y,
            mode: t.mode, type: t.type, line: t.line, opacity: t.opacity ?? 1,
            showlegend: t.showlegend ?? true}))""", chart_id))

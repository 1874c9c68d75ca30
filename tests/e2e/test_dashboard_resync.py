"""A "resync" from the server makes the run page re-read everything over REST.

The page's websocket goes through Playwright's websocket routing, which drops the server's
"points" messages (as if this client fell behind) and lets the test send the "resync" the
server sends when a client's queue overflows.
"""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import create_run, post_points, training_points

pytestmark = pytest.mark.e2e


def test_resync_rereads_over_rest(server: LocalServer, page: Page) -> None:
    run = create_run(server)
    post_points(server, run["id"], training_points(range(0, 500, 50)))
    routes: list[WebSocketRoute] = []
    dropped: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if json.loads(message)["type"] == "points":
                dropped.append(str(message))
            else:
                ws.send(message)

        upstream.on_message(from_server)
        routes.append(ws)

    page.route_web_socket(f"**/ws/runs/{run['id']}", route)
    page.goto(f"{server.url}/run.html?id={run['id']}")
    page.wait_for_function("document.body.dataset.state === 'ready'")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    post_points(server, run["id"], training_points(range(500, 700, 50)))
    deadline = time.monotonic() + 20
    while not dropped and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # Playwright delivers routed messages while the page waits
    assert dropped, "the server sent no points message"
    expect(page.locator("#last-step")).to_have_text("450")
    assert page.evaluate("document.getElementById('chart-norms').data[0].x.length") == 10

    routes[-1].send(json.dumps({"type": "resync"}))

    page.wait_for_function(
        "document.getElementById('chart-norms').data.every(trace => trace.x.length === 14)")
    expect(page.locator("#last-step")).to_have_text("650")

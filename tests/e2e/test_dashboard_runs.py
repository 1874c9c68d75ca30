"""The runs page (live over /ws/runs) and the compare page, in Chromium against a real server."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import create_run, eval_points, post_points, training_points

pytestmark = pytest.mark.e2e


def test_runs_page_updates_live(server: LocalServer, page: Page) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    alpha = create_run(server, project, "alpha")
    page.goto(f"{server.url}/?project={project}")
    rows = page.locator("#runs-table tbody tr")
    expect(rows).to_have_count(1)
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    create_run(server, project, "beta")
    create_run(server, f"other-{project}", "gamma")  # another project: not listed
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("beta")  # newest first

    post_points(server, alpha["id"], training_points(range(0, 300, 50))
                + eval_points(250, {"live": 0.85, "ema_0.999": 0.9}))
    row = page.locator(f"tr[data-run-id='{alpha['id']}']")
    expect(row.locator(".last-step")).to_have_text("250")
    expect(row.locator(".chip[data-model='ema_0.999']")).to_contain_text("accuracy 0.9 @250")
    expect(row.locator(".status")).to_have_text("running")

    httpx.patch(f"{server.url}/api/runs/{alpha['id']}", json={"status": "crashed"},
                timeout=30).raise_for_status()
    expect(row.locator(".status")).to_have_text("crashed")
    expect(rows).to_have_count(2)


def test_compare_selected_runs(server: LocalServer, page: Page) -> None:
    project = f"proj-{uuid.uuid4().hex[:6]}"
    runs = [create_run(server, project, name) for name in ("small-lr", "large-lr")]
    for i, run in enumerate(runs):
        post_points(server, run["id"], training_points(range(0, 500, 50), averagers=("swa",))
                    + eval_points(400, {"live": 0.8 + i / 100, "swa": 0.82 + i / 100}))
    page.goto(f"{server.url}/?project={project}")
    compare = page.get_by_role("button", name="Compare selected")
    expect(compare).to_be_disabled()
    for run in runs:
        page.locator(f"tr[data-run-id='{run['id']}'] input[type=checkbox]").focus()
        page.keyboard.press("Space")
    expect(compare).to_have_text("Compare selected (2)")
    compare.click()
    page.wait_for_url(f"**/compare.html?ids={runs[0]['id']},{runs[1]['id']}")
    page.wait_for_function("document.body?.dataset.state === 'ready'")
    names = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.chart')]
        .map(div => [div.getAttribute('aria-label'), div.data.map(t => t.name)]))""")
    assert names["eval: accuracy"] == [
        "small-lr · live", "small-lr · swa", "large-lr · live", "large-lr · swa"]
    assert names["relative drift ‖live − shadow‖ / ‖live‖"] == ["small-lr · swa", "large-lr · swa"]
    assert names["train/loss"] == ["small-lr", "large-lr"]  # a key of no model: the run


def test_live_updates_keep_keyboard_focus_on_a_checkbox(server: LocalServer, page: Page) -> None:
    # A running run updates its row about once a second: the table must update in place,
    # not be rebuilt (which would throw keyboard focus back to the top of the page).
    project = f"proj-{uuid.uuid4().hex[:6]}"
    run = create_run(server, project, "focus")
    create_run(server, project, "other")
    page.goto(f"{server.url}/?project={project}")
    row = page.locator(f"tr[data-run-id='{run['id']}']")
    box = row.locator("input[type=checkbox]")
    box.focus()
    page.evaluate("window.focusedBox = document.activeElement")
    for step in (100, 200):
        post_points(server, run["id"], training_points(range(step - 50, step + 1, 50)))
        expect(row.locator(".last-step")).to_have_text(str(step))
    assert page.evaluate(
        "document.activeElement === window.focusedBox && window.focusedBox.isConnected")
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    expect(page.get_by_role("button", name="Compare selected")).to_have_text("Compare selected (1)")

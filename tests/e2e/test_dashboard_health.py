"""Averaging health warnings on the run page (issue 15, item 8), one test per warning, each fed
by streamed statistics — from a real Monitor where ema_core produces the situation — and
each warning naming its cause and its remedy, live."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import torch
from playwright.sync_api import Locator, Page, expect
from torch import nn

from ema_core.client import Monitor
from ema_core.ema import EMA
from ema_core.swa import SWA
from emaboard_server.local_server import LocalServer
from tests.e2e.helpers import create_run, post_points
from tests.e2e.pages import open_run_page

pytestmark = pytest.mark.e2e

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


def warning(page: Page, rule: str, averager: str) -> Locator:
    return page.locator(f"#health-list li[data-warning='{rule}'][data-averager='{averager}']")


def train(model: nn.Module, steps: range, averagers: list[EMA | SWA], mon: Monitor) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in steps:
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(step))
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        for averager in averagers:
            averager.update(model)
        mon.step(step, {"loss": loss.item()})


def run_id_of(mon: Monitor, server: LocalServer) -> int:
    import httpx

    (run,) = [r for r in httpx.get(f"{server.url}/api/runs", timeout=30).json()
              if r["name"] == mon.run_name]
    return int(run["id"])


def test_drift_stuck_at_zero_while_live_moves(server: LocalServer, page: Page) -> None:
    # A shadow bound to the live tensors (a hand-written EMA that copies references) streams
    # drift 0 while ‖live‖ moves.
    run = create_run(server)
    steps = range(0, 300, 50)
    post_points(server, run["id"], [
        *({"key": "weights/norm/live", "step": s, "value": 40 + s / 100} for s in steps),
        *({"key": "weights/drift/ema_0.999", "step": s, "value": 0.0} for s in steps),
        *({"key": "weights/drift/swa", "step": s, "value": 0.3} for s in steps)])
    open_run_page(page, server, run["id"])
    item = warning(page, "drift-stuck", "ema_0.999")
    expect(item).to_be_visible()
    expect(item.locator(".title")).to_have_text(
        "ema_0.999 does not average: its drift has been 0 since step 0")
    expect(item.locator(".cause")).to_contain_text("re-bound after it was built")
    expect(item.locator(".remedy")).to_contain_text("Build the averager after the model is final")
    expect(page.locator("#health-list li")).to_have_count(1)  # swa's drift moves: no warning

    # Live: once the shadow drifts, the warning goes.
    post_points(server, run["id"], [
        {"key": "weights/norm/live", "step": 300, "value": 43.0},
        {"key": "weights/drift/ema_0.999", "step": 300, "value": 0.01}])
    expect(item).to_have_count(0)
    expect(page.locator("#sec-health")).to_be_hidden()


def test_ema_half_life_longer_than_the_steps_so_far(server: LocalServer, page: Page,
                                                   tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ema = EMA(model, decays=(0.99, 0.5))  # half-lives 69 and 1 steps
    name = f"half-life-{uuid.uuid4().hex[:6]}"
    with Monitor("health", name, server.url, run_dir=tmp_path / "run", **FAST) as mon:
        mon.watch(ema, stats_every=5)
        train(model, range(0, 30), [ema], mon)
        mon.finish()  # everything sent before the page opens
    run_id = run_id_of(mon, server)
    open_run_page(page, server, run_id)
    item = warning(page, "half-life", "ema_0.99")
    expect(item).to_be_visible()
    expect(item.locator(".title")).to_have_text("ema_0.99 still mostly holds the initial weights")
    expect(item.locator(".cause")).to_contain_text(
        "half-life of 69 steps, longer than the 30 steps run so far")
    expect(item.locator(".remedy")).to_contain_text("use_warmup=True")
    expect(warning(page, "half-life", "ema_0.5")).to_have_count(0)

    # Live: the same run continues past the half-life and the warning goes.
    with Monitor("health", name, server.url, resume="allow", run_dir=tmp_path / "run",
                 **FAST) as mon:
        mon.watch(ema, stats_every=5)
        train(model, range(30, 100), [ema], mon)
    expect(item).to_have_count(0)


def test_swa_evaluated_before_batchnorm_recompute(server: LocalServer, page: Page,
                                                  tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    swa = SWA(model, start_step=5)
    loader = [torch.randn(16, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    name = f"swa-bn-{uuid.uuid4().hex[:6]}"
    with Monitor("health", name, server.url, run_dir=tmp_path / "run", **FAST) as mon:
        mon.watch(swa, stats_every=5)
        train(model, range(0, 20), [swa], mon)
        mon.log_eval(19, {"live": {"acc": 0.5}, "swa": {"acc": 0.3}})  # no update_bn: stale
        mon.finish()
    run_id = run_id_of(mon, server)
    open_run_page(page, server, run_id)
    item = warning(page, "bn-stale", "swa")
    expect(item).to_be_visible()
    expect(item.locator(".title")).to_have_text(
        "swa was evaluated with stale BatchNorm statistics (step 19)")
    expect(item.locator(".cause")).to_contain_text("before its BatchNorm running means")
    expect(item.locator(".remedy")).to_contain_text("swa.update_bn(train_loader, model)")

    # Live: the next evaluation comes after update_bn, and the warning goes.
    with Monitor("health", name, server.url, resume="allow", run_dir=tmp_path / "run",
                 **FAST) as mon:
        mon.watch(swa, stats_every=5)
        train(model, range(20, 25), [swa], mon)
        swa.update_bn(loader, model)
        mon.log_eval(24, {"live": {"acc": 0.5}, "swa": {"acc": 0.6}})
    expect(item).to_have_count(0)

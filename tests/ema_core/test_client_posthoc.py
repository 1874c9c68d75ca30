"""Monitor + PostHocEMA against a real server: every snapshot uploaded once, even across an
outage, and the server's synthesis equals the client's reconstruction."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import torch
from safetensors.numpy import load

from ema_core.client import Monitor
from ema_core.posthoc_ema import PostHocEMA
from ema_core.spool import Spool, sync_spool
from emaboard_server.local_server import LocalServer, free_port
from tests.ema_core.client_utils import find_run, tiny_model, train_step

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


def stored_posthoc(server_url: str, run_id: int) -> list[tuple[str, int]]:
    listing = httpx.get(f"{server_url}/api/runs/{run_id}/posthoc").json()
    return sorted((s["averager"], s["step"]) for s in listing["snapshots"])


def test_watched_posthoc_snapshots_are_uploaded_and_synthesised_alike(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    posthoc = PostHocEMA(model, tmp_path / "phema", snapshot_every=10)
    mon = Monitor("proj", "posthoc-up", shared_server.url, run_dir=tmp_path / "run", **FAST)
    mon.watch(posthoc, stats_every=10)
    for step in range(1, 101):
        train_step(model, opt)
        posthoc.update(model)
        mon.step(step, {})
    mon.finish()
    run = find_run(shared_server.url, "proj", "posthoc-up")
    expected = sorted((s.averager, s.step) for s in posthoc.snapshots)
    assert len(expected) == 20 and stored_posthoc(shared_server.url, run["id"]) == expected
    assert Spool(tmp_path / "run" / "spool.sqlite").pending_snapshots() == []
    served = httpx.get(f"{shared_server.url}/api/runs/{run['id']}/posthoc/file",
                       params={"sigma_rel": 0.07, "step": 100})
    assert served.status_code == 200
    rebuilt = load(served.content)
    for key, value in posthoc.reconstruct(0.07).items():
        np.testing.assert_array_equal(rebuilt[key], value.numpy())
    assert posthoc.snapshot_listeners == []  # finish() stopped listening


def test_snapshots_made_while_the_server_is_down_are_synced_once(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    model = tiny_model(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    posthoc = PostHocEMA(model, tmp_path / "phema", snapshot_every=5)
    down = f"http://127.0.0.1:{free_port()}"
    mon = Monitor("proj", "posthoc-down", down, run_dir=tmp_path / "run", **FAST)
    mon.watch(posthoc)
    for step in range(1, 31):
        train_step(model, opt)
        posthoc.update(model)
        mon.step(step, {})
    mon.finish(timeout_s=0.5)
    spool = Spool(tmp_path / "run" / "spool.sqlite")
    assert len(spool.pending_snapshots()) == 12  # 6 snapshot steps x 2 sigma_rels
    first = sync_spool(tmp_path / "run", shared_server.url)
    assert [r.snapshots_sent for r in first] == [12]
    run = find_run(shared_server.url, "proj", "posthoc-down")
    assert stored_posthoc(shared_server.url, run["id"]) == sorted(
        (s.averager, s.step) for s in posthoc.snapshots)
    for snap in posthoc.snapshots[:3]:  # a retried upload of the same files
        spool.add_snapshot(snap.path, averager=snap.averager, step=snap.step, metric=None,
                           value=None, metadata={})
    assert [r.snapshots_sent for r in sync_spool(tmp_path / "run", shared_server.url)] == [3]
    assert len(stored_posthoc(shared_server.url, run["id"])) == 12  # stored once

"""The sender's snapshot queue alone, against a real server: files out of the spool one at
a time, a lost file dropped without stopping the queue, rows kept once abandoned."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from torch import nn

from ema_core._rate_limited_log import RateLimitedLogger
from ema_core._sender_config import SenderStats, SnapshotJob
from ema_core._snapshot_uploads import SnapshotUploads
from ema_core.ema import EMA
from ema_core.snapshot import snapshot_metadata, snapshot_state
from ema_core.spool import Spool
from ema_core.transport import ApiClient
from emaboard_server.local_server import LocalServer


@pytest.fixture
def api(shared_server: LocalServer) -> Iterator[ApiClient]:
    client = ApiClient(shared_server.url, timeout_s=10.0)
    yield client
    client.close()


def _job(step: int) -> SnapshotJob:
    ema = EMA(nn.Linear(2, 2), decays=0.9)
    return SnapshotJob(averager="ema_0.9", step=step, metric="loss", value=0.5,
                       tensors=snapshot_state(ema), metadata=snapshot_metadata(ema))


def test_a_lost_file_is_dropped_and_the_next_one_uploaded(
    tmp_path: Path, api: ApiClient, shared_server: LocalServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    stats = SenderStats()
    uploads = SnapshotUploads(spool, tmp_path / "snapshots", stats,
                              RateLimitedLogger(logging.getLogger("test")))
    run_id = api.create_run("uploads", "lost", {}).id
    uploads.add_file(tmp_path / "gone.safetensors", averager="ema_0.9", step=1, metadata={})
    uploads.jobs.append(_job(2))
    uploads.write_jobs()
    assert (tmp_path / "snapshots" / "ema_0.9-step2.safetensors").is_file()
    assert uploads.pending == 2

    with caplog.at_level(logging.ERROR, logger="test"):
        assert uploads.upload_one(api, run_id)
    assert "emaboard dropped snapshot" in caplog.text and "gone.safetensors" in caplog.text
    assert uploads.pending == 1 and stats.snapshots_uploaded == 0
    assert uploads.upload_one(api, run_id)
    assert uploads.pending == 0 and stats.snapshots_uploaded == 1
    assert not uploads.upload_one(api, run_id)
    stored = httpx.get(f"{shared_server.url}/api/runs/{run_id}/snapshots").json()
    assert [(s["averager"], s["step"]) for s in stored] == [("ema_0.9", 2)]
    spool.close()


def test_after_abandon_an_uploaded_file_stays_in_the_spool(
    tmp_path: Path, api: ApiClient
) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    uploads = SnapshotUploads(spool, tmp_path / "snapshots", SenderStats(),
                              RateLimitedLogger(logging.getLogger("test")))
    run_id = api.create_run("uploads", "abandoned", {}).id
    uploads.jobs.append(_job(3))
    uploads.write_jobs()
    uploads.abandon()
    assert uploads.upload_one(api, run_id)
    assert uploads.pending == 1 and len(spool.pending_snapshots()) == 1  # left for sync
    again = SnapshotUploads(spool, tmp_path, SenderStats(),  # a later sender on this spool
                            RateLimitedLogger(logging.getLogger("test")))
    assert again.pending == 1
    spool.close()

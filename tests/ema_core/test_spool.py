"""The SQLite spool and ``sync_spool`` / ``emaboard sync`` (real SQLite files, a real server)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import httpx
import pytest
import torch

from ema_core.snapshot import write_snapshot
from ema_core.spool import SPOOL_FILENAME, Spool, find_spools, spool_summary, sync_spool
from ema_core.transport import ApiClient, RetryableError
from emaboard_server.cli import main as cli_main
from emaboard_server.local_server import LocalServer, free_port


def _identity(spool: Spool, **extra: str) -> None:
    spool.set_meta(project="proj", name="run-a", config='{"lr": 0.1}', **extra)


def test_points_come_back_oldest_first_and_nan_survives(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "run" / SPOOL_FILENAME)
    spool.add_points([(5, "b", 1, math.inf, 1.0), (2, "a", 0, math.nan, 2.0)])
    spool.add_points([(9, "a", 2, -1.5, 3.0)])

    rows = spool.head_points(10)

    assert [r[0] for r in rows] == [2, 5, 9]
    assert math.isnan(rows[0][3]) and rows[1][3] == math.inf and rows[2][3] == -1.5
    assert spool.count_points() == 3 and spool.max_seq() == 9


def test_delete_through_keeps_newer_points_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / SPOOL_FILENAME
    spool = Spool(path)
    spool.add_points([(i, "k", i, float(i), 0.0) for i in range(10)])
    spool.delete_points_through(6)
    spool.close()

    reopened = Spool(path)

    assert [r[0] for r in reopened.head_points(100)] == [7, 8, 9]
    assert reopened.head_points(2) == [(7, "k", 7, 7.0, 0.0), (8, "k", 8, 8.0, 0.0)]


def test_empty_spool_has_max_seq_minus_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILENAME)
    assert spool.max_seq() == -1 and spool.count_points() == 0 and spool.head_points(5) == []


def test_snapshot_rows_round_trip(tmp_path: Path) -> None:
    spool = Spool(tmp_path / SPOOL_FILENAME)
    spool.add_snapshot(tmp_path / "a.safetensors", averager="ema_0.999", step=7,
                       metric="accuracy", value=0.5, metadata={"k": "v"})

    (snap,) = spool.pending_snapshots()
    spool.delete_snapshot(snap.id)

    assert (snap.path, snap.averager, snap.step, snap.metric, snap.value, snap.metadata) == (
        tmp_path / "a.safetensors", "ema_0.999", 7, "accuracy", 0.5, {"k": "v"})
    assert spool.pending_snapshots() == []


def test_find_spools_errors_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Spool directory '.*nope' not found"):
        find_spools(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"No spool.sqlite under '.*': pass the run"):
        find_spools(tmp_path)


def test_sync_refuses_a_spool_without_identity(tmp_path: Path) -> None:
    Spool(tmp_path / "r" / SPOOL_FILENAME).close()
    with pytest.raises(ValueError, match="has no run identity: it was not written by a Monitor"):
        sync_spool(tmp_path, f"http://127.0.0.1:{free_port()}")


def test_sync_with_the_server_down_raises_and_keeps_everything(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "r" / SPOOL_FILENAME)
    _identity(spool)
    spool.add_points([(0, "k", 0, 1.0, 0.0)])
    spool.close()

    with pytest.raises(RetryableError, match="POST /api/runs failed: ConnectError"):
        sync_spool(tmp_path, f"http://127.0.0.1:{free_port()}", timeout_s=1.0)

    assert spool_summary(tmp_path / "r" / SPOOL_FILENAME)["points"] == 1


def _fill(spool_dir: Path, n: int) -> Path:
    spool = Spool(spool_dir / SPOOL_FILENAME)
    _identity(spool, status="crashed", status_sent="0",
              summary='{"primary_metric": "accuracy", "primary_mode": "max"}')
    spool.add_points([(i, f"train/k{i % 3}", i // 3, float(i), 1000.0 + i) for i in range(n)])
    snap_path = write_snapshot({"w": torch.arange(4.0)}, {"averager": "swa"},
                               spool_dir / "swa-step3.safetensors")
    spool.add_snapshot(snap_path, averager="swa", step=3, metric="accuracy", value=0.75,
                       metadata={"averager": "swa"})
    spool.add_snapshot(spool_dir / "gone.safetensors", averager="swa", step=4, metric=None,
                       value=None, metadata={})
    spool.close()
    return spool_dir


def test_sync_uploads_everything_once_and_sets_status(tmp_path: Path,
                                                      live_server: LocalServer) -> None:
    run_dir = _fill(tmp_path / "runs" / "proj" / "run-a", 30)

    (first,) = sync_spool(tmp_path / "runs", live_server.url, max_batch_points=7)
    (again,) = sync_spool(tmp_path / "runs", live_server.url)

    assert (first.points_sent, first.points_inserted, first.snapshots_sent,
            first.snapshots_missing, first.status) == (30, 30, 1, 1, "crashed")
    assert (again.run_id, again.points_sent) == (None, 0)  # nothing pending: left alone
    run = httpx.get(f"{live_server.url}/api/runs/{first.run_id}").json()
    assert (run["project"], run["name"], run["status"], run["config"]) == (
        "proj", "run-a", "crashed", {"lr": 0.1})
    assert run["summary"] == {"primary_metric": "accuracy", "primary_mode": "max"}
    series = httpx.get(f"{live_server.url}/api/runs/{first.run_id}/metrics",
                       params={"prefix": "train/"}).json()["series"]
    assert series["train/k1"]["steps"] == list(range(10))
    assert series["train/k1"]["values"] == [float(3 * i + 1) for i in range(10)]
    snaps = httpx.get(f"{live_server.url}/api/runs/{first.run_id}/snapshots").json()
    assert [(s["averager"], s["step"], s["value"]) for s in snaps] == [("swa", 3, 0.75)]
    assert spool_summary(run_dir / SPOOL_FILENAME)["points"] == 0


def test_cli_sync_exit_codes(tmp_path: Path, live_server: LocalServer,
                             caplog: pytest.LogCaptureFixture) -> None:
    _fill(tmp_path / "run", 4)
    caplog.set_level(logging.INFO, logger="emaboard_server.sync")

    assert cli_main(["sync", str(tmp_path / "nothing-here"), "--server", live_server.url]) == 1
    assert "sync failed: Spool directory" in caplog.text
    assert cli_main(["sync", str(tmp_path / "run"), "--server", live_server.url]) == 0
    assert ("4 points sent (4 new, 0 conflicting with stored values), 1 snapshots sent, 1 "
            "missing, status crashed") in caplog.text


def test_sync_finds_snapshots_of_a_moved_run_dir_next_to_the_spool(
    tmp_path: Path, live_server: LocalServer
) -> None:
    run_dir = tmp_path / "moved"
    spool = Spool(run_dir / SPOOL_FILENAME)
    _identity(spool)
    (run_dir / "snapshots").mkdir()
    write_snapshot({"w": torch.ones(2)}, {"averager": "swa"},
                   run_dir / "snapshots" / "swa-step1.safetensors")
    spool.add_snapshot(tmp_path / "old-place" / "snapshots" / "swa-step1.safetensors",
                       averager="swa", step=1, metric=None, value=None, metadata={})
    spool.close()

    (result,) = sync_spool(run_dir, live_server.url)

    assert (result.snapshots_sent, result.snapshots_missing) == (1, 0)


def test_a_spool_whose_name_was_taken_syncs_to_a_new_run_and_keeps_it(
    tmp_path: Path, live_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    taken = ApiClient(live_server.url)
    taken.create_run("proj", "run-a", {})
    taken.close()
    spool = Spool(tmp_path / "r" / SPOOL_FILENAME)
    _identity(spool, resume="never")
    spool.add_points([(0, "k", 0, 1.0, 0.0)])
    spool.close()

    with caplog.at_level(logging.WARNING, logger="ema_core.spool"):
        (first,) = sync_spool(tmp_path, live_server.url)
    assert "Run proj/run-a exists: " in caplog.text and "goes to proj/run-a-2" in caplog.text
    assert httpx.get(f"{live_server.url}/api/runs/{first.run_id}").json()["name"] == "run-a-2"
    assert spool_summary(tmp_path / "r" / SPOOL_FILENAME)["server_name"] == "run-a-2"

    spool = Spool(tmp_path / "r" / SPOOL_FILENAME)
    spool.add_points([(1, "k", 1, 2.0, 0.0)])  # a later sync of this spool continues run-a-2
    spool.close()
    (second,) = sync_spool(tmp_path, live_server.url)
    assert (second.run_id, second.points_sent) == (first.run_id, 1)

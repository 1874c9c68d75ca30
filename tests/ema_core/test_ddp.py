"""DDP, 2 processes (torchrun, gloo, CPU): the averagers see what one process sees; only rank 0
streams and writes. One torchrun per module (tests/ema_core/dist_worker.py, scenario ``ddp``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import load_file

from ema_core.client import Monitor
from ema_core.ema import EMA
from emaboard_server.local_server import LocalServer
from tests.ema_core.client_utils import find_run, series
from tests.ema_core.dist_worker import STEPS, assert_metrics_close
from tests.utils.torchrun import torchrun

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LocalServer]]:
    out = tmp_path_factory.mktemp("ddp")
    with LocalServer(data_dir=out / "server") as server:
        torchrun("tests.ema_core.dist_worker", "ddp", str(out), server.url)
        yield out, server


def _json(out: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((out / f"{name}.json").read_text()))


@pytest.mark.parametrize("rank", [0, 1])
def test_ddp_statistics_equal_single_process(ddp_run: tuple[Path, LocalServer],
                                             rank: int) -> None:
    out, _ = ddp_run
    got, want = _json(out, f"ddp-rank{rank}"), _json(out, "single-rank0")
    assert sorted(got["stats"]) == ["10", "5"]
    for step in ("5", "10"):
        assert_metrics_close(got["stats"][step], want["stats"][step], f"rank {rank} step {step}")
    assert_metrics_close(got["compute_stats"], want["compute_stats"], "compute_stats")
    assert got["evals"] == want["evals"]  # swap-in evaluation on the DDP-wrapped model


def test_ddp_every_rank_keeps_the_single_process_shadow(ddp_run: tuple[Path, LocalServer]
                                                        ) -> None:
    out, _ = ddp_run
    want = load_file(out / "single-rank0.safetensors")
    for rank in (0, 1):
        got = load_file(out / f"ddp-rank{rank}.safetensors")
        assert sorted(got) == sorted(want)
        assert all(torch.equal(got[k], want[k]) for k in want), f"rank {rank}"


def test_ddp_snapshot_written_once_by_rank_zero(ddp_run: tuple[Path, LocalServer]) -> None:
    out, _ = ddp_run
    assert not (out / "snapshot-ddp-rank1.safetensors").exists()
    got = load_file(out / "snapshot-ddp-rank0.safetensors")
    want = load_file(out / "single-rank0.safetensors")
    assert all(torch.equal(v, want[f"ema_0.9/{k}"]) for k, v in got.items())


def test_ddp_only_rank_zero_streams(ddp_run: tuple[Path, LocalServer]) -> None:
    out, server = ddp_run
    assert (_json(out, "ddp-rank0")["monitor_active"], _json(out, "ddp-rank1")["monitor_active"]) \
        == (True, False)
    assert (out / "run-ddp-rank0" / "spool.sqlite").exists()
    assert not (out / "run-ddp-rank1").exists()  # rank 1: no spool, no snapshot files
    run = find_run(server.url, "dist", "ddp")
    got = series(server.url, run["id"])
    assert run["status"] == "finished"
    assert got["train/loss"]["steps"] == list(range(1, STEPS + 1))
    assert got["weights/rel_drift/ema_0.9"]["steps"] == [5, 10]
    want = _json(out, "single-rank0")["stats"]["10"]["weights/rel_drift/ema_0.9"]
    assert got["weights/rel_drift/ema_0.9"]["values"][-1] == pytest.approx(want, rel=1e-6)
    assert got["eval/swa/accuracy"]["steps"] == [5, 10]
    snapshots = httpx.get(f"{server.url}/api/runs/{run['id']}/snapshots").json()
    assert snapshots and all(s["averager"] == "ema_0.9" for s in snapshots)
    assert len({s["step"] for s in snapshots}) == len(snapshots)  # one upload per improvement


def test_ddp_monitor_on_other_ranks_is_inert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             make_mlp: Any) -> None:
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it, before init_process_group
    model = make_mlp()
    ema = EMA(model, 0.9)
    mon = Monitor("p", "r", "http://127.0.0.1:9", run_dir=tmp_path / "run")
    mon.watch(ema, stats_every=3)
    mon.track_best("accuracy", averager="ema_0.9")
    for step in range(1, 7):
        ema.update(model)
        mon.step(step, {"loss": 1.0})
    mon.log(6, {"lr": 0.1})
    mon.log_eval(6, {"ema_0.9": {"accuracy": 0.5}})
    with pytest.raises(ValueError, match="Invalid step -1"):
        mon.log(-1, {})  # bad input is refused on every rank alike
    mon.finish()
    assert (mon.active, mon.run_id, mon.sender_stats.points_posted) == (False, None, 0)
    assert ema.stats_every == 3 and ema.last_stats is not None  # the averager is configured
    assert not (tmp_path / "run").exists()
    with pytest.raises(RuntimeError, match="after finish"):
        mon.step(7)


def test_ddp_monitor_created_before_the_process_group_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_mlp: Any
) -> None:
    monkeypatch.delenv("RANK", raising=False)
    mon = Monitor("p", "r", "http://127.0.0.1:9", run_dir=tmp_path / "run", finish_timeout_s=0.5)
    try:
        monkeypatch.setenv("RANK", "1")  # stands for a process group created afterwards
        with pytest.raises(RuntimeError, match="created before torch.distributed"):
            mon.watch(EMA(make_mlp(), 0.9))
    finally:
        mon.finish()

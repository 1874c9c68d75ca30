"""FSDP2 (``fully_shard``), 2 processes (torchrun, gloo, CPU), uneven shards: shard-local
shadows, exact global statistics, swap-in on the sharded model, one gathered snapshot, resume
through torch.distributed.checkpoint. One torchrun per module (tests/ema_core/dist_worker.py).

The model (``dist_worker.Net``) has first dimensions 7, 3 and 1 sharded over 2 ranks: rank 1
holds 3 of 7 rows, 1 of 3, and an empty shard of ``gate``. Before shard-local shadows,
``EMA(model, 0.9)`` on it raised ``RuntimeError: Cannot flatten unevenly sharded tensor``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from safetensors.torch import load_file

from ema_core.snapshot import load_snapshot, read_snapshot_metadata
from emaboard_server.local_server import LocalServer
from tests.ema_core.client_utils import find_run, series
from tests.ema_core.dist_worker import SAVE_AT, STEPS, assert_metrics_close, make_net
from tests.utils.torchrun import torchrun

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, LocalServer]]:
    out = tmp_path_factory.mktemp("fsdp")
    with LocalServer(data_dir=out / "server") as server:
        torchrun("tests.ema_core.dist_worker", "fsdp,fsdp_bf16", str(out), server.url)
        yield out, server


def _json(out: Path, name: str) -> dict[str, Any]:
    return dict(json.loads((out / f"{name}.json").read_text()))


def _assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, f"differ: {different[:5]}"


def test_fsdp_uneven_shards_get_shard_local_shadows(fsdp_run: tuple[Path, LocalServer]) -> None:
    out, _ = fsdp_run
    ranks = [_json(out, f"fsdp-rank{r}") for r in (0, 1)]
    assert all(r["sharded"] for r in ranks)
    local = [r["local_numel"] for r in ranks]
    assert (local[0]["mid.weight"], local[1]["mid.weight"]) == (4 * 16, 3 * 16)
    assert (local[0]["out.weight"], local[1]["out.weight"]) == (2 * 7, 1 * 7)
    assert (local[0]["gate.weight"], local[1]["gate.weight"]) == (7, 0)  # an empty shard


@pytest.mark.parametrize("rank", [0, 1])
def test_fsdp_statistics_equal_single_process(fsdp_run: tuple[Path, LocalServer],
                                              rank: int) -> None:
    out, _ = fsdp_run
    got, want = _json(out, f"fsdp-rank{rank}"), _json(out, "single-rank0")
    assert sorted(got["stats"]) == ["10", "5"]
    for step in ("5", "10"):
        assert_metrics_close(got["stats"][step], want["stats"][step], f"rank {rank} step {step}")
    assert_metrics_close(got["compute_stats"], want["compute_stats"], "compute_stats")


def test_fsdp_bf16_parameters_get_fp32_shadows_and_exact_statistics(
    fsdp_run: tuple[Path, LocalServer]
) -> None:
    out, _ = fsdp_run
    got, want = _json(out, "fsdp-bf16-rank0"), _json(out, "single-bf16-rank0")
    assert got["live_dtypes"] == ["torch.bfloat16"]
    assert {v for k, v in got["dtypes"].items() if "num_batches" not in k} == {"torch.float32"}
    for step in ("5", "10"):
        assert_metrics_close(got["stats"][step], want["stats"][step], f"bf16 step {step}")
    _assert_same_tensors(load_file(out / "fsdp-bf16-rank0.safetensors"),
                         load_file(out / "single-bf16-rank0.safetensors"))


def test_fsdp_swap_in_evaluates_shadows_of_the_sharded_model(
    fsdp_run: tuple[Path, LocalServer]
) -> None:
    out, _ = fsdp_run
    want = _json(out, "single-rank0")["evals"]
    for rank in (0, 1):
        got = _json(out, f"fsdp-rank{rank}")
        assert got["evals"] == want  # live, ema_0.9, ema_0.99, swa at steps 5 and 10
        assert got["live_restored"]


def test_fsdp_gathered_shadows_equal_single_process(fsdp_run: tuple[Path, LocalServer]) -> None:
    out, _ = fsdp_run
    _assert_same_tensors(load_file(out / "fsdp-rank0.safetensors"),
                         load_file(out / "single-rank0.safetensors"))
    assert not (out / "fsdp-rank1.safetensors").exists()  # snapshot_state: {} off rank 0
    assert (_json(out, "fsdp-rank0")["snapshot_state_keys"],
            _json(out, "fsdp-rank1")["snapshot_state_keys"]) == (15, 0)


def test_fsdp_snapshot_is_one_full_file_on_rank_zero(fsdp_run: tuple[Path, LocalServer]) -> None:
    out, _ = fsdp_run
    path = out / "snapshot-fsdp-rank0.safetensors"
    assert not (out / "snapshot-fsdp-rank1.safetensors").exists()
    assert [p.name for p in out.glob(".snapshot-*")] == []  # no temporary file left
    single = load_file(out / "single-rank0.safetensors")
    want = {k.split("/", 1)[1]: v for k, v in single.items() if k.startswith("ema_0.9/")}
    _assert_same_tensors(load_file(path), want)
    meta = read_snapshot_metadata(path)
    numel = str(sum(v.numel() for v in want.values()))  # global, not one shard's
    assert (meta["averager"], meta["step"], meta["parameter_count"]) == ("ema_0.9", "10", numel)
    model = make_net()
    load_snapshot(model, path)  # a plain model takes the gathered file as it is
    assert torch.equal(model.gate.weight, single["ema_0.9/gate.weight"])


def test_fsdp_averaged_model_is_refused_with_the_remedy(fsdp_run: tuple[Path, LocalServer]
                                                        ) -> None:
    out, _ = fsdp_run
    assert _json(out, "fsdp-rank0")["averaged_model_error"].startswith(
        "averaged_model('ema_0.9') on a sharded (FSDP2) model: use swap_in / evaluate_all")


def test_fsdp_resume_through_dcp_is_bit_identical(fsdp_run: tuple[Path, LocalServer]) -> None:
    out, _ = fsdp_run
    assert _json(out, "fsdp-rank0")["resumed_step"] == SAVE_AT
    _assert_same_tensors(load_file(out / "fsdp-resumed-rank0.safetensors"),
                         load_file(out / "fsdp-rank0.safetensors"))


def test_fsdp_a_full_state_loads_into_sharded_shadows(fsdp_run: tuple[Path, LocalServer]
                                                      ) -> None:
    out, _ = fsdp_run
    _assert_same_tensors(load_file(out / "fsdp-from-full-rank0.safetensors"),
                         load_file(out / "single-rank0.safetensors"))


def test_fsdp_only_rank_zero_streams_and_uploads_gathered_snapshots(
    fsdp_run: tuple[Path, LocalServer]
) -> None:
    out, server = fsdp_run
    assert (_json(out, "fsdp-rank0")["monitor_active"],
            _json(out, "fsdp-rank1")["monitor_active"]) == (True, False)
    assert not (out / "run-fsdp-rank1").exists()
    run = find_run(server.url, "dist", "fsdp")
    got = series(server.url, run["id"])
    assert got["train/loss"]["steps"] == list(range(1, STEPS + 1))
    assert got["weights/cos/ema_0.99"]["steps"] == [5, 10]
    want = _json(out, "single-rank0")["stats"]["10"]["weights/cos/ema_0.99"]
    assert got["weights/cos/ema_0.99"]["values"][-1] == pytest.approx(want, rel=1e-6)
    snapshots = httpx.get(f"{server.url}/api/runs/{run['id']}/snapshots").json()
    assert snapshots, "the tracked accuracy improved at least once"
    first = httpx.get(f"{server.url}/api/runs/{run['id']}/snapshots/{snapshots[0]['id']}/file")
    files = list((out / "run-fsdp-rank0" / "snapshots").glob("*.safetensors"))
    assert first.status_code == 200 and len(files) == len(snapshots)
    assert sorted(load_file(files[0])) == sorted(k.split("/", 1)[1] for k in load_file(
        out / "single-rank0.safetensors") if k.startswith("ema_0.9/"))  # full, not a shard

"""EmaboardCallback under Lightning's DDP strategy with 2 CPU processes (torchrun, gloo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from emaboard_server.local_server import LocalServer
from tests.ema_core.client_utils import find_run, series
from tests.utils.torchrun import torchrun

pytest.importorskip("lightning.pytorch")
pytestmark = pytest.mark.distributed


def test_lightning_ddp_every_rank_averages_and_only_rank_zero_streams(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    torchrun("tests.ema_core.integrations.lightning_ddp_worker", str(tmp_path),
             shared_server.url)

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 64 samples / 2 ranks / batch 8 = 4 optimizer steps per epoch, 2 epochs
    assert [(r["global_step"], r["ema_step"], r["n_averaged"]) for r in ranks] == [(8, 8, 6)] * 2
    assert [r["active"] for r in ranks] == [True, False]
    shadows = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert all(torch.equal(shadows[0][k], shadows[1][k]) for k in shadows[0])  # DDP replicas
    assert ranks[0]["drift"] == ranks[1]["drift"] > 0

    assert (tmp_path / "run-rank0" / "spool.sqlite").exists()
    assert not (tmp_path / "run-rank1").exists()
    run = find_run(shared_server.url, "lightning", "ddp")
    got = series(shared_server.url, run["id"])
    assert run["status"] == "finished"
    assert got["train/loss"]["steps"] == list(range(1, 9))
    assert got["weights/rel_drift/ema_0.9"]["steps"] == [2, 4, 6, 8]
    assert got["weights/rel_drift/ema_0.9"]["values"][-1] == pytest.approx(ranks[0]["drift"])
    assert got["eval/swa/accuracy"]["steps"] == [4, 8]

"""What-if decay: rebuilt EMAs swapped in and evaluated, live weights restored, streamed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from ema_core.client import Monitor
from ema_core.exceptions import IllPosedReconstructionWarning, ModelMismatchError
from ema_core.posthoc_ema import PostHocEMA
from ema_core.swap import evaluate_all
from ema_core.whatif import evaluate_posthoc, posthoc_grid, swap_in_weights
from emaboard_server.local_server import LocalServer
from tests.ema_core.client_utils import eval_fn, find_run, series, tiny_model, train_step

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


def trained(tmp_path: Path, steps: int = 120) -> tuple[torch.nn.Module, PostHocEMA]:
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    posthoc = PostHocEMA(model, tmp_path / "phema", snapshot_every=10)
    for _ in range(steps):
        train_step(model, opt)
        posthoc.update(model)
    return model, posthoc


def test_swap_in_weights_restores_the_live_model_bit_exactly(tmp_path: Path) -> None:
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    zeros = {k: torch.zeros_like(v) for k, v in before.items()}
    model.train()
    with pytest.raises(RuntimeError, match="boom"), swap_in_weights(model, zeros):
        assert all(float(v.abs().sum()) == 0 for v in model.state_dict().values())
        model.eval()
        raise RuntimeError("boom")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ModelMismatchError, match=r"missing \['2.bias'\]"):
        with swap_in_weights(model, {k: v for k, v in zeros.items() if k != "2.bias"}):
            pass


def test_the_sweep_evaluates_the_well_posed_grid_and_restores_the_live_weights(
    tmp_path: Path,
) -> None:
    model, posthoc = trained(tmp_path, steps=125)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    results = evaluate_posthoc(model, posthoc, eval_fn)
    assert posthoc.snapshots[-1].step == 125  # snapshotted "now" first
    step, grid = posthoc_grid(posthoc.snapshots)
    assert step == 125 and list(results) == grid and grid[0] == 0.05 and len(grid) == 10
    assert all(set(m) == {"loss", "accuracy"} for m in results.values())
    assert all(torch.equal(live[k], v) for k, v in model.state_dict().items())
    tracked = evaluate_all(model, [posthoc], eval_fn, include_live=False)
    # σ_rel 0.05 is a snapshot itself: its rebuilt EMA is that shadow
    assert results[0.05]["loss"] == pytest.approx(tracked["ema_sigma_rel_0.05"]["loss"],
                                                  rel=1e-5)
    earlier = evaluate_posthoc(model, posthoc, eval_fn, sigma_rels=[0.1], step=60)
    assert list(earlier) == [0.1]
    with pytest.warns(IllPosedReconstructionWarning, match="narrower than every snapshot"):
        evaluate_posthoc(model, posthoc, eval_fn, sigma_rels=[0.03], step=60)


def test_monitor_streams_posthoc_points_and_averager_lengths(
    tmp_path: Path, shared_server: LocalServer
) -> None:
    model, posthoc = trained(tmp_path, steps=60)
    mon = Monitor("proj", "whatif", shared_server.url, run_dir=tmp_path / "run", **FAST)
    mon.watch(posthoc, stats_every=10, batch_size=64)
    results = evaluate_posthoc(model, posthoc, eval_fn, sigma_rels=[0.05, 0.0833, 0.12])
    mon.log_posthoc(60, results)
    mon.finish()
    run = find_run(shared_server.url, "proj", "whatif")
    got = series(shared_server.url, run["id"], prefix="posthoc/")
    assert sorted(got) == sorted(f"posthoc/{s}/{m}" for s in ("0.05", "0.0833", "0.12")
                                 for m in ("loss", "accuracy"))
    assert got["posthoc/0.0833/accuracy"]["values"] == [results[0.0833]["accuracy"]]
    assert run["summary"]["batch_size"] == 64
    assert run["summary"]["averagers"] == {
        name: {"kind": "posthoc_ema", "update_every": 1, "averaged": True,
               "sigma_rels": [0.05, 0.1], "time_unit": "steps"}
        for name in posthoc.averager_names}
    listing = httpx.get(f"{shared_server.url}/api/runs/{run['id']}/posthoc").json()
    assert [s["step"] for s in listing["steps"]][-1] == 60
    other = Monitor("whatif", "batch-size", shared_server.url, run_dir=tmp_path / "r2", **FAST)
    with pytest.raises(ValueError, match=r"^Invalid batch_size 0"):
        other.watch(posthoc, batch_size=0)
    other.finish()

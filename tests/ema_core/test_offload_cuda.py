"""CUDA only: offloaded shadows (pinned host memory, side-stream copies, worker thread) and the
DDP / FSDP2 scenarios on NCCL. Run by scripts/gpu-check; skipped, with the reason, without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ema_core.ema import EMA
from tests.ema_core.dist_worker import assert_metrics_close
from tests.utils.torchrun import torchrun

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _model(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(512, 1024), nn.BatchNorm1d(1024), nn.Linear(1024, 7)).to(
        "cuda", dtype)


def _perturb(model: nn.Module, step: int) -> None:
    gen = torch.Generator(device="cuda").manual_seed(step)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen, device="cuda").to(p.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_offloaded_shadows_are_pinned_and_equal_gpu_shadows(dtype: torch.dtype) -> None:
    model = _model(dtype)
    offloaded = EMA(model, [0.9, 0.99], device="cpu", stats_every=4)
    on_gpu = EMA(model, [0.9, 0.99], stats_every=4)
    store = offloaded._store
    assert store.offloader is not None and store.offloader.cuda
    assert all(g.flat.is_pinned() and g.staging is not None and g.staging.is_pinned()
               for g in store.groups)
    assert all(t.is_pinned() for t in store.all_copied)
    for step in range(1, 9):
        _perturb(model, step)
        offloaded.update(model)
        on_gpu.update(model)
    for name in offloaded.averager_names:
        got, want = offloaded.shadow_state_dict(name), on_gpu.shadow_state_dict(name)
        for key in want:
            assert got[key].device.type == "cpu"
            torch.testing.assert_close(got[key], want[key].cpu(), rtol=1e-6, atol=1e-7)
    assert_metrics_close(offloaded.last_stats.to_metrics(), on_gpu.last_stats.to_metrics(), "stats")


def test_update_does_not_wait_for_the_gpu() -> None:
    model = _model()
    ema = EMA(model, 0.5, device="cpu")
    torch.cuda.synchronize()
    torch.cuda._sleep(200_000_000)  # ~0.1 s of GPU work queued before the update
    ema.update(model)
    busy = not torch.cuda.current_stream().query()
    torch.cuda.synchronize()
    assert busy, "update() blocked until the GPU was idle"


def test_the_next_optimizer_step_waits_for_the_copy_of_the_weights() -> None:
    model = _model()
    ema = EMA(model, 0.5, device="cpu")
    opt = torch.optim.SGD(model.parameters(), lr=1000.0)
    before = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    shadow0 = {k: v.clone() for k, v in ema.shadow_state_dict().items()}
    model(torch.randn(8, 512, device="cuda")).sum().backward()
    torch.cuda._sleep(100_000_000)  # the copy queues behind this on the side stream
    ema.update(model)
    opt.step()  # would overwrite the weights under a copy that has not run yet
    got = ema.shadow_state_dict()
    for key in ("0.weight", "2.bias"):
        torch.testing.assert_close(got[key], shadow0[key].lerp(before[key], 0.5))


@pytest.mark.distributed
def test_ddp_and_fsdp_scenarios_on_nccl(tmp_path: Path) -> None:
    nproc = min(2, torch.cuda.device_count())  # NCCL needs one GPU per rank
    torchrun("tests.ema_core.dist_worker", "ddp,fsdp,fsdp_bf16", str(tmp_path), nproc=nproc,
             env={"DIST_DEVICE": "cuda"})
    single = json.loads((tmp_path / "single-rank0.json").read_text())
    for name in ("ddp", "fsdp"):
        got = json.loads((tmp_path / f"{name}-rank0.json").read_text())
        for step in ("5", "10"):
            assert_metrics_close(got["stats"][step], single["stats"][step], f"{name} {step}")
    bf16 = json.loads((tmp_path / "fsdp-bf16-rank0.json").read_text())
    bf16_single = json.loads((tmp_path / "single-bf16-rank0.json").read_text())
    assert_metrics_close(bf16["stats"]["10"], bf16_single["stats"]["10"], "bf16")

"""Multi-process scenarios for tests/ema_core/test_ddp.py and test_fsdp.py (run by torchrun).

``python -m torch.distributed.run --standalone --nproc_per_node=2 -m tests.ema_core.dist_worker
SCENARIO OUT_DIR [SERVER_URL]``: every rank trains the same small model on the *same* batches
(so the averaged gradient equals the single-process one exactly), once wrapped (DDP or FSDP2)
and once plain (the single-process reference, no process group involved), and writes what it
measured to ``OUT_DIR/<name>-rank<r>.json`` and ``.safetensors`` files that the tests compare.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

from ema_core.client import Monitor
from ema_core.ema import EMA
from ema_core.snapshot import save_snapshot, snapshot_state
from ema_core.stats import WeightStats
from ema_core.swa import SWA
from ema_core.swap import evaluate_all

STEPS, STATS_EVERY, SAVE_AT = 10, 5, 6
DEVICE = torch.device("cpu")  # $DIST_DEVICE=cuda: NCCL, one GPU per rank (scripts/gpu-check)
FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


class Net(nn.Module):
    """Uneven under 2-way sharding: ``mid`` (7 rows: 4 + 3), ``out`` (3: 2 + 1), ``norm``
    (7), ``gate`` (1 row: rank 1's shard is empty); BatchNorm buffers stay plain tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.bn = nn.Linear(6, 16), nn.BatchNorm1d(16)
        self.mid, self.norm = nn.Linear(16, 7), nn.LayerNorm(7)
        self.out, self.gate = nn.Linear(7, 3), nn.Linear(7, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 6) -> (B, 3)
        h = torch.tanh(self.norm(self.mid(torch.tanh(self.bn(self.inp(x))))))
        return self.out(h) + self.gate(h)


def make_net(dtype: torch.dtype = torch.float32) -> Net:
    torch.manual_seed(0)
    return Net().to(device=DEVICE, dtype=dtype)


def batch(step: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(16, 6, generator=gen)  # (B, 6)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # (B,) in {0, 1, 2}
    return x.to(DEVICE, dtype), y.to(DEVICE)


def eval_fn(model: nn.Module) -> dict[str, float]:
    model.eval()
    x, y = batch(-1)
    logits = model(x.to(next(model.parameters()).dtype)).float()
    model.train()
    return {"loss": float(nn.functional.cross_entropy(logits, y)),
            "accuracy": float((logits.argmax(1) == y).float().mean())}


class Run:
    """A model, its optimizer, an EMA (two decays) and an SWA, trained step by step."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float32,
                 swa: bool = True) -> None:
        self.model, self.dtype = model, dtype
        self.opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        self.ema = EMA(model, [0.9, 0.99], stats_every=STATS_EVERY)
        self.swa = SWA(model, start_step=3, stats_every=STATS_EVERY) if swa else None
        self.stats: dict[str, dict[str, float]] = {}
        self.evals: dict[str, Any] = {}

    @property
    def averagers(self) -> list[Any]:
        return [a for a in (self.ema, self.swa) if a is not None]

    def train(self, steps: range, monitor: Monitor | None = None) -> None:
        for step in steps:
            x, y = batch(step, self.dtype)
            loss = nn.functional.cross_entropy(self.model(x).float(), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            for averager in self.averagers:
                averager.update(self.model)
            if monitor is not None:
                monitor.step(step, {"loss": float(loss)})
            if step % STATS_EVERY == 0:
                parts = [a.last_stats for a in self.averagers if a.last_stats is not None]
                self.stats[str(step)] = WeightStats.merge(parts).to_metrics()
                self.evals[str(step)] = evaluate_all(self.model, self.averagers, eval_fn)
                if monitor is not None:
                    monitor.log_eval(step, self.evals[str(step)])

    def summary(self) -> dict[str, Any]:
        now = WeightStats.merge([a.compute_stats(self.model) for a in self.averagers])
        return {"stats": self.stats, "evals": self.evals, "compute_stats": now.to_metrics()}


def rank() -> int:
    return dist.get_rank()


def write(out: Path, name: str, data: dict[str, Any]) -> None:
    (out / f"{name}-rank{rank()}.json").write_text(json.dumps(data, sort_keys=True))


def save_shadows(out: Path, name: str, run: Run) -> None:
    """Every averager's shadow as this rank sees it (gathered on rank 0 when sharded)."""
    tensors = {f"{n}/{k}": v for a in run.averagers for n in a.averager_names
               for k, v in snapshot_state(a, n).items()}
    if tensors:
        save_file(tensors, str(out / f"{name}-rank{rank()}.safetensors"))


def single(out: Path, dtype: torch.dtype = torch.float32, tag: str = "single") -> Run:
    """The single-process reference: plain model, no process group involved."""
    run = Run(make_net(dtype), dtype)
    run.train(range(1, STEPS + 1))
    write(out, tag, run.summary())
    save_shadows(out, tag, run)
    return run


def ddp(out: Path, server: str | None) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    single(out)
    run = Run(DDP(make_net(), device_ids=[DEVICE.index] if DEVICE.type == "cuda" else None))
    monitor = Monitor("dist", "ddp", server, run_dir=out / f"run-ddp-rank{rank()}",
                      **FAST) if server else None
    if monitor is not None:
        monitor.watch(*run.averagers, stats_every=STATS_EVERY)
        monitor.track_best("accuracy", averager="ema_0.9")
    run.train(range(1, STEPS + 1), monitor)
    data = run.summary()
    data["monitor_active"] = monitor.active if monitor else None
    if monitor is not None:
        monitor.finish()
    save_snapshot(run.ema, out / f"snapshot-ddp-rank{rank()}.safetensors", name="ema_0.9")
    save_shadows(out, "ddp", run)
    write(out, "ddp", data)


def shard(model: nn.Module) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(DEVICE.type, (dist.get_world_size(),))
    for child in (model.inp, model.mid, model.out, model.gate):  # type: ignore[union-attr]
        fully_shard(child, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the root holds bn and norm
    return model


def checkpoint(run: Run) -> dict[str, Any]:
    """What users hand to torch.distributed.checkpoint for an FSDP2 model."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(run.model, run.opt)
    return {"model": model_state, "optim": optim_state, "ema": run.ema, "swa": run.swa}


def fsdp(out: Path, server: str | None) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    reference = single(out)
    run = Run(shard(make_net()))
    data: dict[str, Any] = {"sharded": run.ema.sharded,
                            "local_numel": {k: v.to_local().numel() for k, v in
                                            run.ema.shadow_state_dict().items()
                                            if hasattr(v, "to_local")}}
    monitor = Monitor("dist", "fsdp", server, run_dir=out / f"run-fsdp-rank{rank()}",
                      **FAST) if server else None
    if monitor is not None:
        monitor.watch(*run.averagers, stats_every=STATS_EVERY)
        monitor.track_best("accuracy", averager="ema_0.9")
    run.train(range(1, SAVE_AT + 1), monitor)
    dcp.save(checkpoint(run), checkpoint_id=str(out / "dcp"))
    run.train(range(SAVE_AT + 1, STEPS + 1), monitor)
    data.update(run.summary())
    live = [p.to_local().clone() for p in run.model.parameters()]
    evaluate_all(run.model, run.averagers, eval_fn)
    data["live_restored"] = all(torch.equal(a, p.to_local())
                                for a, p in zip(live, run.model.parameters(), strict=True))
    data["monitor_active"] = monitor.active if monitor else None
    if monitor is not None:
        monitor.finish()
    save_snapshot(run.ema, out / f"snapshot-fsdp-rank{rank()}.safetensors", name="ema_0.9")
    save_shadows(out, "fsdp", run)
    data["snapshot_state_keys"] = len(snapshot_state(run.ema))
    try:
        run.ema.averaged_model()
    except RuntimeError as error:
        data["averaged_model_error"] = str(error)

    resumed = Run(shard(make_net()))  # a fresh process's objects, loaded from the checkpoint
    state = checkpoint(resumed)
    dcp.load(state, checkpoint_id=str(out / "dcp"))
    set_state_dict(resumed.model, resumed.opt, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])
    data["resumed_step"] = resumed.ema.step
    resumed.train(range(SAVE_AT + 1, STEPS + 1))
    save_shadows(out, "fsdp-resumed", resumed)

    full = Run(shard(make_net()))  # a full (unsharded) state loaded into sharded shadows
    full.ema.load_state_dict(reference.ema.state_dict())
    full.swa.load_state_dict(reference.swa.state_dict())  # type: ignore[union-attr]
    save_shadows(out, "fsdp-from-full", full)
    write(out, "fsdp", data)


def set_weights(model: nn.Module, step: int) -> None:
    """Deterministic bf16 weights for ``step``: the same full values, sharded or not (training
    in bf16 would round differently once the batch is split, this isolates the averaging)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            base = torch.randn(p.shape, generator=torch.Generator().manual_seed(i))
            noise = torch.randn(p.shape, generator=torch.Generator().manual_seed(100 * step + i))
            full = (base + 0.02 * step * base.flip(-1) + 0.01 * noise).to(p.device, p.dtype)
            if isinstance(p, DTensor):
                full = distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None)
            p.copy_(full)


def bf16_run(model: nn.Module) -> Run:
    set_weights(model, 0)
    run = Run(model, torch.bfloat16)
    for step in range(1, STEPS + 1):
        set_weights(model, step)
        for averager in run.averagers:
            averager.update(model)
        if step % STATS_EVERY == 0:
            parts = [a.last_stats for a in run.averagers if a.last_stats is not None]
            run.stats[str(step)] = WeightStats.merge(parts).to_metrics()
    return run


def fsdp_bf16(out: Path, server: str | None) -> None:
    reference = bf16_run(make_net(torch.bfloat16))
    write(out, "single-bf16", reference.summary())
    save_shadows(out, "single-bf16", reference)
    run = bf16_run(shard(make_net(torch.bfloat16)))
    data = run.summary()
    data["dtypes"] = {k: str(v.dtype) for k, v in run.ema.shadow_state_dict().items()}
    data["live_dtypes"] = sorted({str(p.dtype) for p in run.model.parameters()})
    write(out, "fsdp-bf16", data)
    save_shadows(out, "fsdp-bf16", run)


def assert_metrics_close(got: dict[str, float], want: dict[str, float], what: str) -> None:
    """Same keys, every value within 1e-6 relative (1e-12 absolute near 0)."""
    assert sorted(got) == sorted(want), f"{what}: keys differ"
    bad = {k: (got[k], want[k]) for k in want
           if not math.isclose(got[k], want[k], rel_tol=1e-6, abs_tol=1e-12)}
    assert not bad, f"{what}: {len(bad)} values differ: {dict(list(bad.items())[:5])}"


def posthoc(out: Path, server: str | None) -> None:
    """PostHocEMA one process, under DDP and under FSDP2: only rank 0 writes snapshot files."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ema_core.posthoc_ema import PostHocEMA

    for tag, model in (("single", make_net()), ("ddp", DDP(make_net())),
                       ("fsdp", shard(make_net()))):
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        averager = PostHocEMA(model, out / f"posthoc-{tag}-rank{rank()}", snapshot_every=5)
        for step in range(1, STEPS + 1):
            x, y = batch(step)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            averager.update(model)
        averager.close()


SCENARIOS: dict[str, Callable[[Path, str | None], None]] = {
    "ddp": ddp, "fsdp": fsdp, "fsdp_bf16": fsdp_bf16, "posthoc": posthoc,
}


def main() -> None:
    names, out = sys.argv[1].split(","), Path(sys.argv[2])
    server = sys.argv[3] if len(sys.argv) > 3 else None
    global DEVICE
    if os.environ.get("DIST_DEVICE") == "cuda":
        DEVICE = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(DEVICE)
    backend = "nccl" if DEVICE.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=60))
    try:
        for name in names:
            SCENARIOS[name](out, server)
            dist.barrier()
    finally:
        # Free what reference cycles still hold (FSDP2's hooks keep gloo work and tensors)
        # while the interpreter is alive: freed at exit instead, gloo aborts the process
        # now and then ("terminate called without an active exception").
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""Benchmark: the cost of exact global statistics under FSDP2 (one all-reduce per stats step).

``python -m torch.distributed.run --standalone --nproc_per_node=2 -m bench.distributed_stats
[--repeats R] [--device cpu|cuda]``. Each model is sharded with ``fully_shard`` (every
top-level child, then the root) and averaged by an ``EMA`` with two decays. Measured side by
side on rank 0, each timing after a barrier so that no rank waits for a slower one:

* the floor: one ``lerp_`` over a flat buffer with this rank's shard size;
* ``EMA.update`` without statistics (shard-local, no communication);
* a stats step (update + statistics, including the all-reduce);
* the all-reduce alone: ``dist.all_reduce`` of the (parameters × (1 + 2·shadows)) float64
  vector that a stats step sends.

Gloo on CPU by default; ``--device cuda`` uses NCCL, one GPU per process.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from bench.ema_update import resnet50_sized, transformer
from ema_core.ema import EMA


def timed(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    """Median ms of ``fn`` over ``repeats`` runs, each started after a barrier."""
    fn()
    times = []
    for _ in range(repeats):
        dist.barrier()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def shard(model: nn.Module, device: torch.device) -> nn.Module:
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    model.to(device)
    for child in model.children():
        blocks = list(child) if isinstance(child, nn.ModuleList) else [child]
        for block in blocks:
            if any(True for _ in block.parameters()):
                fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def bench(name: str, model: nn.Module, repeats: int, device: torch.device) -> list[str]:
    model = shard(model, device)
    ema = EMA(model, [0.999, 0.9999])
    local = sum(p.to_local().numel() for p in model.parameters())
    flat_s = torch.randn(local, device=device)
    flat_l = torch.randn(local, device=device)
    n_params = sum(1 for _ in model.parameters())
    vector = torch.zeros((n_params, 5), dtype=torch.float64,
                         device=device if device.type == "cuda" else "cpu")

    def stats_step() -> None:
        ema.stats_every = 1
        ema.update(model)
        ema.stats_every = 0

    floor = timed(lambda: flat_s.lerp_(flat_l, 1e-3), repeats, device)
    rows = [
        ("floor: one lerp_ over this rank's shard", floor),
        ("EMA.update, 2 shadows, no stats", timed(lambda: ema.update(model), repeats, device)),
        ("stats step (update + global stats)", timed(stats_step, repeats, device)),
        (f"all_reduce alone: {n_params} x 5 float64 = {vector.numel() * 8} bytes",
         timed(lambda: dist.all_reduce(vector), repeats, device)),
    ]
    total = sum(p.numel() for p in model.parameters())
    return [f"| {name} | {total / 1e6:.1f} M | {local / 1e6:.1f} M | {n_params} | {label} | "
            f"{ms:.3f} | {ms / floor:.2f} |" for label, ms in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    if args.device == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lines = [
        f"torch {torch.__version__}, {dist.get_world_size()} ranks, "
        f"{dist.get_backend()} on {device.type}, median of {args.repeats} (after a barrier)",
        "",
        "| model | params | per rank | tensors | what | ms | × floor |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for name, build in (("resnet50-sized", resnet50_sized),
                        ("transformer-many-small", lambda: transformer(256, 24))):
        lines += bench(name, build(), args.repeats, device)
    if dist.get_rank() == 0:
        print("\n".join(lines), flush=True)
    dist.barrier()
    # Free what reference cycles still hold (FSDP2's hooks keep gloo work and tensors)
    # while the interpreter is alive: freed at exit instead, gloo aborts the process
    # now and then ("terminate called without an active exception").
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

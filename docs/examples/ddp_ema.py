"""EMA and emaboard under DDP: every rank keeps a shadow, rank 0 streams and writes.

Run on CPU (gloo) or on GPUs (NCCL, one process per GPU)::

    torchrun --nproc_per_node=2 docs/examples/ddp_ema.py --out /tmp/ddp-ema
    torchrun --nproc_per_node=2 docs/examples/ddp_ema.py --server http://127.0.0.1:8000

Each rank trains on its own slice of a synthetic regression task; DDP averages gradients, so
the live weights, and with them every rank's EMA shadow, stay identical.
"""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ema_core import EMA, Monitor, evaluate_all, save_snapshot

TRUE_W = torch.linspace(-1.0, 1.0, 16)  # (16,) the weights the model should find


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 1))


def batch(seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 16, generator=gen)  # (B, 16)
    y = (x @ TRUE_W + 0.1 * torch.randn(32, generator=gen))[:, None]  # (B, 1)
    return x.to(device), y.to(device)


def make_eval_fn(device: torch.device):  # type: ignore[no-untyped-def]
    def eval_fn(model: nn.Module) -> dict[str, float]:
        """Validation loss on this rank's slice, averaged over all ranks (same on every rank)."""
        model.eval()
        with torch.no_grad():
            x, y = batch(10_000 + dist.get_rank(), device)
            loss = nn.functional.mse_loss(model(x), y)
        model.train()
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)
        return {"loss": float(loss) / dist.get_world_size()}

    return eval_fn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--server", default=None, help="emaboard server URL (optional)")
    parser.add_argument("--out", type=Path, default=Path("ddp-ema-out"))
    args = parser.parse_args()

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = DistributedDataParallel(build_model().to(device))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ema = EMA(model, [0.9, 0.98])  # every rank keeps a full shadow of its replica
    # Every rank creates the Monitor (after init_process_group); only rank 0 streams.
    mon = Monitor("examples", "ddp", args.server) if args.server else None
    if mon is not None:
        mon.watch(ema, stats_every=50)
        mon.track_best("loss", mode="min", averager="ema_0.98")
    eval_fn = make_eval_fn(device)
    for step in range(1, args.steps + 1):
        x, y = batch(step * 100 + rank, device)  # each rank its own data
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
        if mon is not None:
            mon.step(step, {"loss": loss.item()})
        if step % 100 == 0:
            results = evaluate_all(model, [ema], eval_fn)  # on every rank, as eval_fn reduces
            if mon is not None:
                mon.log_eval(step, results)
            if rank == 0:
                print(f"step {step}: " + ", ".join(
                    f"{name} {m['loss']:.4f}" for name, m in results.items()), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = save_snapshot(ema, args.out / "ema_0.98.safetensors", name="ema_0.98")  # rank 0
    if rank == 0:
        print(f"snapshot: {path}", flush=True)
    if mon is not None:
        mon.finish()
    dist.barrier()  # no rank tears the process group down while another still uses it


if __name__ == "__main__":
    main()
    # The model, optimizer and averagers are gone with main()'s frame; free what reference
    # cycles still hold (FSDP2's hooks keep gloo work and tensors) while the interpreter is
    # alive: freed at exit instead, gloo aborts the process now and then ("terminate called
    # without an active exception").
    gc.collect()
    dist.destroy_process_group()

"""EMA and emaboard under FSDP2 (``fully_shard``): shard-local shadows, exact global statistics.

Run on CPU (gloo) or on GPUs (NCCL, one process per GPU)::

    torchrun --nproc_per_node=2 docs/examples/fsdp2_ema.py --out /tmp/fsdp2-ema
    torchrun --nproc_per_node=2 docs/examples/fsdp2_ema.py --out /tmp/fsdp2-ema --resume

Each rank keeps the EMA of its own shards (fp32 for the bf16 parameters, updated with no
communication); statistics are global (one all-reduce of a small vector per stats step); the
snapshot is gathered tensor by tensor into one file on rank 0; the EMA is checkpointed with
torch.distributed.checkpoint next to the model and the optimizer, and ``--resume`` continues.
"""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from ema_core import EMA, Monitor, evaluate_all, save_snapshot


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm, self.fc = nn.LayerNorm(width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, W) -> (B, W)
        return x + torch.tanh(self.fc(self.norm(x)))


class Net(nn.Module):
    """30-wide residual MLP with 5 classes: 5 and 30 rows shard unevenly over 4 ranks."""

    def __init__(self, width: int = 30, depth: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(12, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.head = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 12) -> (B, 5)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def batch(seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 12, generator=gen)  # (B, 12)
    return x.to(device, torch.bfloat16), x[:, :5].argmax(1).to(device)  # (B,) in 0..4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--server", default=None, help="emaboard server URL (optional)")
    parser.add_argument("--out", type=Path, default=Path("fsdp2-ema-out"))
    parser.add_argument("--resume", action="store_true", help="continue from --out/checkpoint")
    args = parser.parse_args()

    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    torch.manual_seed(0)
    model = Net().to(device=device, dtype=torch.bfloat16)
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ema = EMA(model, [0.99, 0.999])  # this rank's shards, in fp32
    state = {"ema": ema}  # the EMA is a torch.distributed.checkpoint Stateful
    first = 1
    if args.resume:
        model_state, optim_state = get_state_dict(model, opt)
        state.update(model=model_state, optim=optim_state)  # type: ignore[arg-type]
        dcp.load(state, checkpoint_id=str(args.out / "checkpoint"))
        set_state_dict(model, opt, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])
        first = ema.step + 1
    mon = Monitor("examples", "fsdp2", args.server) if args.server else None
    if mon is not None:
        mon.watch(ema, stats_every=50)  # on every rank: statistics are a collective
    ema.stats_every = 50
    for step in range(first, first + args.steps):
        x, y = batch(step * 100 + rank, device)
        loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
        if mon is not None:
            mon.step(step, {"loss": loss.item()})
        if step % 50 == 0 and rank == 0 and ema.last_stats is not None:
            m = ema.last_stats.to_metrics()
            print(f"step {step}: loss {loss.item():.3f}, rel drift ema_0.99 "
                  f"{m['weights/rel_drift/ema_0.99']:.4f}, ema_0.999 "
                  f"{m['weights/rel_drift/ema_0.999']:.4f}", flush=True)

    def accuracy(net: nn.Module) -> dict[str, float]:
        x, y = batch(-1, device)
        with torch.no_grad():
            return {"accuracy": float((net(x).argmax(1) == y).float().mean())}

    results = evaluate_all(model, [ema], accuracy)  # every rank: a sharded forward
    if rank == 0:
        print("accuracy: " + ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in results.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    model_state, optim_state = get_state_dict(model, opt)
    dcp.save({"model": model_state, "optim": optim_state, "ema": ema},
             checkpoint_id=str(args.out / "checkpoint"))
    path = save_snapshot(ema, args.out / "ema_0.999.safetensors", name="ema_0.999")
    if rank == 0:
        print(f"step {ema.step}: checkpoint {args.out / 'checkpoint'}, snapshot {path}")
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

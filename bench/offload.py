"""Benchmark: training step time with EMA shadows on the GPU, offloaded to host memory, or none.

``python -m bench.offload [--device cuda|cpu] [--steps N] [--width W] [--depth D]``. One
training loop (an MLP, AdamW, random batches), timed per step (median, the device synchronized
at each step's end), in these variants, interleaved round by round:

* ``no EMA``;
* ``EMA on the GPU``: ``EMA(model, 0.9999)``;
* ``EMA device="cpu"`` (pinned host shadows, side-stream copy and worker-thread lerp overlapped
  with the next step: ``ema_core._offload``);
* ``naive CPU EMA``: each step copies every parameter to the host and lerps there, on the
  training thread (what a hand-written offload does).

Also the peak GPU memory of each variant. ``--device cpu`` runs the same loop on a small model
(the offload pipeline then is not engaged: there is nothing to offload).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from ema_core.ema import EMA

DECAY = 0.9999


def mlp(width: int, depth: int) -> nn.Module:
    return nn.Sequential(*[m for _ in range(depth) for m in (nn.Linear(width, width), nn.GELU())])


def naive_cpu_ema(model: nn.Module) -> Callable[[], None]:
    shadow = [p.detach().to("cpu", copy=True) for p in model.parameters()]

    def update() -> None:
        with torch.no_grad():
            for s, p in zip(shadow, model.parameters(), strict=True):
                s.lerp_(p.detach().cpu(), 1.0 - DECAY)

    return update


def run(
    variant: str, width: int, depth: int, steps: int, device: torch.device
) -> tuple[float, int]:
    """Median step ms and peak GPU bytes of one variant (a fresh model and optimizer)."""
    torch.manual_seed(0)
    model = mlp(width, depth).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    update: Callable[[], None] = lambda: None  # noqa: E731
    if variant == "EMA on the GPU":
        ema = EMA(model, DECAY)
        update = lambda: ema.update(model)  # noqa: E731
    elif variant == 'EMA device="cpu"':
        ema = EMA(model, DECAY, device="cpu")
        update = lambda: ema.update(model)  # noqa: E731
    elif variant == "naive CPU EMA":
        update = naive_cpu_ema(model)
    x = torch.randn(256, width, device=device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = model(x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        update()
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if cuda else 0
    return 1e3 * statistics.median(times[2:]), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=0, help="default 4096 on CUDA, 256 on CPU")
    parser.add_argument("--depth", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    width = args.width or (4096 if device.type == "cuda" else 256)
    variants = ["no EMA", "EMA on the GPU", 'EMA device="cpu"', "naive CPU EMA"]
    results: dict[str, list[tuple[float, int]]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            results[variant].append(run(variant, width, args.depth, args.steps, device))
    params = sum(p.numel() for p in mlp(width, args.depth).parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, MLP {args.depth} x {width} ({params / 1e6:.0f} M "
          f"parameters), AdamW, batch 256; median step over {args.steps} steps, median of "
          f"{args.rounds} interleaved rounds")
    print("| variant | step ms | × no EMA | peak GPU memory GiB |")
    print("|---|---:|---:|---:|")
    base = statistics.median(ms for ms, _ in results["no EMA"])
    for variant in variants:
        ms = statistics.median(m for m, _ in results[variant])
        peak = max(p for _, p in results[variant]) / 2**30
        print(f"| {variant} | {ms:.2f} | {ms / base:.3f} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()

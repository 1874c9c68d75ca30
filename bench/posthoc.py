"""Benchmark: post-hoc EMA — per-step cost, snapshot write time, synthesis time.

Measured side by side in one run on the ResNet-50-sized model of ``bench/ema_update.py``
(25.6 M parameters, 320 tensors):

* per step: ``PostHocEMA.update`` (σ_rel 0.05 and 0.10, a step without a snapshot) as a
  ratio to two one-``lerp_`` floors (two shadows), next to ``EMA`` with two decays;
* snapshot: the training thread's share (copying both shadows to CPU) and the writer
  thread's (two safetensors files), as ms and as a ratio to one floor;
* synthesis of one σ_rel at the last snapshot from 20 and from 100 snapshots: solve +
  stream + write (``PostHocEMA.save_reconstruction``), next to the EDM2-style baseline that
  loads each snapshot whole with ``safetensors.torch.load_file``, accumulates in fp32 and
  writes the result;
  plus the peak of memory traced by Python (NumPy arrays) during the synthesis.

Usage: ``python bench/posthoc.py [--threads N] [--repeats R] [--dir DIR] [--keep]``. The
snapshot files (100 × 102 MB = 10 GB) go to a temporary folder under ``--dir`` (default
the system temp dir) and are deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bench.ema_update import paired, resnet50_sized
from ema_core.ema import EMA
from ema_core.posthoc_ema import PostHocEMA
from ema_core.posthoc_files import solve_for_snapshots


def per_step(model: torch.nn.Module, folder: Path, repeats: int) -> list[str]:
    """Rows: PostHocEMA and EMA(2 decays) per update, ratio to two floors."""
    n = sum(p.numel() for p in model.parameters())
    flat_s, flat_l = torch.randn(n), torch.randn(n)

    def floors() -> None:
        flat_s.lerp_(flat_l, 0.001)
        flat_s.lerp_(flat_l, 0.001)

    posthoc = PostHocEMA(model, folder / "step", snapshot_every=10**9)
    two = EMA(model, [0.999, 0.9999])
    rows = []
    for label, fn in (("EMA, 2 decays", lambda: two.update(model)),
                      ("PostHocEMA, σ_rel 0.05 + 0.10", lambda: posthoc.update(model))):
        ms, ratio = paired(fn, floors, repeats, time.perf_counter)
        rows.append(f"| {label} | {ms:.2f} | {ratio:.2f} × 2 floors |")
    return rows


def snapshot_cost(model: torch.nn.Module, folder: Path, repeats: int) -> list[str]:
    """Rows: copy on the training thread, write on the writer thread (two files)."""
    n = sum(p.numel() for p in model.parameters())
    flat_s, flat_l = torch.randn(n), torch.randn(n)
    posthoc = PostHocEMA(model, folder / "snap", snapshot_every=10**9)
    posthoc.update(model)
    floor_ms, copy_ms, write_ms = [], [], []
    for _ in range(repeats):
        posthoc.update(model)  # (untimed) a snapshot is taken only of moved shadows
        a = time.perf_counter()
        flat_s.lerp_(flat_l, 0.001)
        b = time.perf_counter()
        posthoc.snapshot()
        c = time.perf_counter()
        posthoc.flush()
        d = time.perf_counter()
        floor_ms.append(1e3 * (b - a))
        copy_ms.append(1e3 * (c - b))
        write_ms.append(1e3 * (d - c))
    floor = statistics.median(floor_ms)
    size_mb = sum(p.stat().st_size for p in (folder / "snap").iterdir()) / 1e6 / repeats
    copy, write = statistics.median(copy_ms), statistics.median(write_ms)
    return [
        f"| snapshot, training thread (copy 2 shadows to CPU) | {copy:.1f} "
        f"| {copy / floor:.2f} × 1 floor |",
        f"| snapshot, writer thread (2 files, {size_mb:.0f} MB) | {write:.1f} | "
        f"{write / floor:.2f} × 1 floor |",
    ]


def make_snapshots(model: torch.nn.Module, folder: Path, count: int) -> PostHocEMA:
    """``count`` snapshots (count/2 steps × 2 σ_rels), weights moved between steps."""
    posthoc = PostHocEMA(model, folder, snapshot_every=1)
    params = [p for p in model.parameters()]
    for _ in range(count // 2):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p), alpha=1e-3)
        posthoc.update(model)
    posthoc.flush()
    return posthoc


def baseline_synthesis(posthoc: PostHocEMA, sigma_rel: float, path: Path) -> None:
    """EDM2-style: each snapshot loaded whole, accumulated in fp32, written."""
    snapshots = posthoc.snapshots
    solution = solve_for_snapshots(snapshots, sigma_rel=sigma_rel, warn=False)
    out: dict[str, torch.Tensor] = {}
    for snap, c, used in zip(snapshots, solution.coefficients, solution.used, strict=True):
        if not used:
            continue
        for key, tensor in load_file(str(snap.path)).items():
            if key not in out:
                out[key] = torch.zeros_like(tensor, dtype=torch.float32)
            if tensor.is_floating_point():
                out[key] += float(c) * tensor
            else:
                out[key] = tensor
    save_file(out, str(path))


def synthesis(model: torch.nn.Module, folder: Path, count: int, repeats: int) -> list[str]:
    posthoc = make_snapshots(model, folder / f"n{count}", count)
    ours, base, peaks = [], [], []
    for _ in range(repeats):
        tracemalloc.start()
        a = time.perf_counter()
        posthoc.save_reconstruction(folder / "out.safetensors", 0.07)
        b = time.perf_counter()
        peaks.append(tracemalloc.get_traced_memory()[1] / 1e6)
        tracemalloc.stop()
        baseline_synthesis(posthoc, 0.07, folder / "baseline.safetensors")
        c = time.perf_counter()
        ours.append(b - a)
        base.append(c - b)
    gb = sum(s.path.stat().st_size for s in posthoc.snapshots) / 1e9
    mine = statistics.median(ours)
    return [
        f"| synthesis from {count} snapshots ({gb:.1f} GB), streamed, float64, written | "
        f"{1e3 * mine:.0f} | {mine / statistics.median(base):.2f} × baseline; "
        f"{gb / mine:.2f} GB/s; peak traced {max(peaks):.0f} MB |",
        f"| baseline: load_file each snapshot, fp32 accumulate, written | "
        f"{1e3 * statistics.median(base):.0f} | 1.00 |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dir", default=None, help="where the snapshot files go")
    parser.add_argument("--keep", action="store_true", help="keep the snapshot files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with torch.no_grad():
        model = resnet50_sized()
    n = sum(p.numel() for p in model.parameters())
    folder = Path(tempfile.mkdtemp(prefix="bench-posthoc-", dir=args.dir))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"torch.set_num_threads({args.threads}), resnet50-sized ({n / 1e6:.1f} M parameters), "
          f"median of {args.repeats} repeats (synthesis: 3)\n")
    print("| what | ms | ratio |\n|---|---:|---|", flush=True)
    try:
        for rows in (per_step(model, folder, args.repeats),
                     snapshot_cost(model, folder, min(args.repeats, 5)),
                     synthesis(model, folder, 20, 3),
                     synthesis(model, folder, 100, 3)):
            print("\n".join(rows), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Overhead of the streaming Monitor on a small CPU training loop.

Runs the same small-CNN training loop (EMA with two decays, weight statistics every 50
steps in every variant) three ways, interleaved round by round so that machine noise hits
them alike:

- ``baseline``: no Monitor;
- ``server up``: ``mon.step(step, {"loss": ...})`` each step, streaming to a live server;
- ``server down``: the same, with nothing listening (everything goes to the spool).

Prints steps/s of each variant (median over rounds), the ratios to the baseline measured
in the same run, and the p50/p99 cost of one ``mon.step`` call in microseconds.

    .venv/bin/python bench/monitor_overhead.py --steps 300 --rounds 5
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ema_core.client import Monitor
from ema_core.ema import EMA
from emaboard_server.local_server import LocalServer, free_port


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 16, 16)
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 8, 8)
        nn.Flatten(), nn.Linear(32 * 8 * 8, 10),
    )


def _noop(step: int, scalars: dict[str, float]) -> None:
    """Stands in for ``mon.step`` in the baseline: the cost of a call and of the timer."""


def run_loop(steps: int, monitor: Monitor | None,
             step_times_ns: list[int]) -> tuple[float, float]:
    """Train ``steps`` steps; returns (steps per wall second, steps per CPU second).

    CPU time is this process's (training thread plus the Monitor's threads; the server is
    another process), which other processes' load on the machine does not inflate.

    Appends the duration (ns) of each ``mon.step`` call, or of an empty function call with
    the same arguments in the baseline, to ``step_times_ns``.
    """
    torch.manual_seed(0)
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    ema = EMA(model, decays=(0.999, 0.9999), stats_every=50)
    call = _noop if monitor is None else monitor.step
    if monitor is not None:
        monitor.watch(ema, stats_every=50)
    x = torch.randn(32, 3, 32, 32)  # (B, C, H, W)
    y = torch.randint(0, 10, (32,))  # (B,)
    clock = time.perf_counter_ns
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
        scalars = {"loss": loss.item()}
        s0 = clock()
        call(step, scalars)
        step_times_ns.append(clock() - s0)
    return steps / (time.perf_counter() - t0), steps / (time.process_time() - c0)


def sender_cpu_s() -> float:
    """CPU seconds used so far by the Monitor's threads (Linux ``/proc``; NaN elsewhere)."""
    total = 0.0
    for thread in threading.enumerate():
        if not thread.name.startswith("emaboard-"):
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile_us(samples_ns: list[int], q: float) -> float:
    ordered = sorted(samples_ns)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per variant and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="emaboard-bench-"))
    down_url = f"http://127.0.0.1:{free_port()}"
    rates: dict[str, list[tuple[float, float]]] = {"baseline": [], "server up": [],
                                                   "server down": []}
    step_ns: dict[str, list[int]] = {"baseline": [], "server up": [], "server down": []}
    sender_cpu: dict[str, float] = {"server up": 0.0, "server down": 0.0}
    loop_s: dict[str, float] = {"server up": 0.0, "server down": 0.0}
    with LocalServer(data_dir=workdir / "server") as server:
        urls = {"server up": server.url, "server down": down_url}
        run_loop(20, None, [])  # warm-up
        for rnd in range(args.rounds):
            rates["baseline"].append(run_loop(args.steps, None, step_ns["baseline"]))
            for variant, url in urls.items():
                mon = Monitor("bench", f"{variant}-{rnd}", url,
                              run_dir=workdir / "runs" / f"{variant}-{rnd}")
                rates[variant].append(run_loop(args.steps, mon, step_ns[variant]))
                sender_cpu[variant] += sender_cpu_s()  # before finish() ends the threads
                loop_s[variant] += args.steps / rates[variant][-1][0]
                mon.finish(timeout_s=2.0)
    report(args, rates, step_ns)
    for variant, cpu_s in sender_cpu.items():
        print(f"Monitor threads' CPU time, {variant}: {cpu_s:.2f} s over {loop_s[variant]:.1f} s "
              f"of training ({100 * cpu_s / loop_s[variant]:.2f} %; /proc ticks of 10 ms)")


def report(args: argparse.Namespace, rates: dict[str, list[tuple[float, float]]],
           step_ns: dict[str, list[int]]) -> None:
    median: Callable[[list[float]], float] = statistics.median
    print(f"small CNN, batch 32, CPU, {args.threads} thread(s), {args.steps} steps x "
          f"{args.rounds} interleaved rounds; EMA(0.999, 0.9999), stats_every=50 in all variants")
    print("| variant | steps/s (median) | steps/s ratio | steps per CPU-s ratio "
          "| mon.step p50 µs | mon.step p99 µs |")
    print("|---|---|---|---|---|---|")
    for variant in ("baseline", "server up", "server down"):
        wall = [w / bw for (w, _), (bw, _) in zip(rates[variant], rates["baseline"], strict=True)]
        cpu = [c / bc for (_, c), (_, bc) in zip(rates[variant], rates["baseline"], strict=True)]
        samples = step_ns[variant]
        name = ("baseline (no Monitor; µs: an empty call in its place)" if variant == "baseline"
                else f"Monitor, {variant}")
        print(f"| {name} | {median([w for w, _ in rates[variant]]):.1f} | {median(wall):.3f} | "
              f"{median(cpu):.3f} | {percentile_us(samples, 0.50):.1f} | "
              f"{percentile_us(samples, 0.99):.1f} |")
    print("ratios: median over rounds of (variant / baseline of the same round)")


if __name__ == "__main__":
    main()

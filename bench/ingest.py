"""Ingest benchmark: a real emaboard server on loopback, several posting processes, websockets.

Each of ``--clients`` processes streams batches of ``--batch`` points to its own run for
``--seconds``; ``--ws-clients`` websocket clients (one asyncio process) watch those runs.
Every batch carries one ``bench/marker`` point whose value is the time it was posted, so a
websocket client measures ingest → delivery latency by reading the markers it receives.

Prints sustained points/s (points acknowledged by the server / wall time of the posting
phase) and the delivery latency p50/p99 (ms).

    .venv/bin/python bench/ingest.py                   # 4 clients, 10 websockets, 10 s
    .venv/bin/python bench/ingest.py --seconds 3       # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.utils.server import ServerProcess  # noqa: E402

MARKER = re.compile(r'"key":"bench/marker","step":\d+,"value":([-0-9.eE+]+)')
KEYS_PER_BATCH = 10


def post_batches(
    url: str, run_id: int, batch: int, seconds: float, start_at: float, results: mp.Queue
) -> None:
    """One training process: post ``batch``-point batches until ``seconds`` have passed."""
    steps_per_batch = max(1, (batch - 1) // KEYS_PER_BATCH)
    keys = [f"train/k{k}" for k in range(KEYS_PER_BATCH)]
    posted = inserted = step = 0
    with httpx.Client(base_url=url, timeout=30.0) as client:
        time.sleep(max(0.0, start_at - time.time()))
        begin = time.perf_counter()
        while time.perf_counter() - begin < seconds:
            points = [
                {"key": key, "step": step + i, "value": float(i), "wall_time": 0.0}
                for i in range(steps_per_batch)
                for key in keys
            ]
            points.append({"key": "bench/marker", "step": step, "value": time.time()})
            response = client.post(f"/api/runs/{run_id}/metrics", json={"points": points})
            response.raise_for_status()
            posted += len(points)
            inserted += response.json()["inserted"]
            step += steps_per_batch
        elapsed = time.perf_counter() - begin
    results.put((posted, inserted, elapsed))


async def watch(ws_url: str, run_ids: list[int], n: int, stop_at: float) -> list[float]:
    """``n`` websocket clients round-robin over ``run_ids``; return latencies in ms."""
    latencies: list[float] = []

    async def one(run_id: int) -> None:
        async with websockets.connect(f"{ws_url}/ws/runs/{run_id}", max_size=None) as ws:
            await ws.recv()  # hello
            while time.time() < stop_at:
                try:
                    text = await asyncio.wait_for(
                        ws.recv(), timeout=max(0.1, stop_at - time.time())
                    )
                except TimeoutError:
                    break
                now = time.time()
                latencies.extend((now - float(v)) * 1000 for v in MARKER.findall(str(text)))

    await asyncio.gather(*(one(run_ids[i % len(run_ids)]) for i in range(n)))
    return latencies


def ws_process(ws_url: str, run_ids: list[int], n: int, stop_at: float, out: mp.Queue) -> None:
    """Run :func:`watch` in its own process and report the latencies."""
    out.put(asyncio.run(watch(ws_url, run_ids, n, stop_at)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--ws-clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, ServerProcess(data_dir=Path(tmp)) as server:
        run_ids = [
            httpx.post(f"{server.url}/api/runs", json={"project": "bench", "name": f"r{i}"}).json()[
                "id"
            ]
            for i in range(args.clients)
        ]
        start_at = time.time() + 2.0
        results: mp.Queue = mp.Queue()
        lat_q: mp.Queue = mp.Queue()
        watcher = mp.Process(
            target=ws_process,
            args=(server.ws_url, run_ids, args.ws_clients, start_at + args.seconds + 1.0, lat_q),
        )
        watcher.start()
        posters = [
            mp.Process(
                target=post_batches,
                args=(server.url, run_id, args.batch, args.seconds, start_at, results),
            )
            for run_id in run_ids
        ]
        for p in posters:
            p.start()
        outcomes = [results.get() for _ in posters]
        latencies = sorted(lat_q.get())
        for p in [*posters, watcher]:
            p.join()

    posted = sum(o[0] for o in outcomes)
    inserted = sum(o[1] for o in outcomes)
    elapsed = max(o[2] for o in outcomes)
    print(
        f"clients={args.clients} batch={args.batch} ws_clients={args.ws_clients} "
        f"seconds={args.seconds}"
    )
    print(f"points posted {posted}, stored {inserted}, in {elapsed:.2f} s")
    print(f"sustained ingest: {inserted / elapsed:,.0f} points/s (target >= 100,000)")
    if latencies:
        p50 = statistics.quantiles(latencies, n=100)[49] if len(latencies) > 1 else latencies[0]
        p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else latencies[0]
        print(
            f"ingest->websocket latency over {len(latencies)} markers: "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < 100 ms)"
        )
    else:
        print("no websocket deliveries measured")


if __name__ == "__main__":
    main()

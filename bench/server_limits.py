"""One oversized request must not take the server down: RSS growth and /api/health latency
while a huge ingest body is refused, measured side by side in one run (issue 14, item 1).

For each scenario a fresh real server (uvicorn on loopback) is started; one thread polls
``GET /api/health`` back to back on its own connection while the main thread sends one
body. Printed per scenario: the server's RSS growth (peak ``VmHWM`` during the request minus
``VmRSS`` before it), the health latency p50 / max while the body was in flight, and the
answer. The baseline row is the health latency with nothing else going on.

Scenarios (``--mb`` sets the size, 150 MB by default):

- ``refused, Content-Length``: a body announcing more than ``max_body_bytes`` (refused unread);
- ``refused, chunked``: the same body streamed without a length (refused once past the cap);
- ``largest accepted batch``: 50,000 points in one body under the default 4 MiB cap;
- ``no byte cap (reference)``: the server started with ``max_body_bytes`` = 1 GiB, the
  1 GiB cap every body had before issue 14, parsing the whole body (in a worker thread).

    .venv/bin/python bench/server_limits.py            # 150 MB bodies
    .venv/bin/python bench/server_limits.py --mb 50    # quicker
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Iterator
from multiprocessing import Event, Queue
from pathlib import Path

import httpx

from emaboard_server.local_server import LocalServer

POINT = b'{"key":"layer/encoder.layers.11.mlp.fc2/rel_drift/ema_0.999","step":1,"value":0.5},'


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def poll_health(url: str, stop: Event, out: Queue) -> None:  # type: ignore[type-arg]
    """Poll ``/api/health`` back to back until ``stop``; put [(start, latency s), ...] on ``out``.

    A process of its own: in the sending process it would share that process's GIL.
    """
    samples = []
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
            client.get("/api/health").raise_for_status()
            samples.append((start, time.perf_counter() - start))
            time.sleep(0.002)
    out.put(samples)


class HealthPoller:
    """:func:`poll_health` in a child process, as a context manager."""

    def __init__(self, url: str) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop, self._out = mp.Event(), mp.Queue()
        self._proc = mp.Process(target=poll_health, args=(url, self._stop, self._out))

    def __enter__(self) -> HealthPoller:
        self._proc.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.samples = self._out.get(timeout=60)
        self._proc.join()

    def between(self, begin: float, end: float) -> list[float]:
        """Latencies (ms) of the polls that overlapped ``[begin, end]``."""
        return [lat * 1e3 for start, lat in self.samples if start <= end and start + lat >= begin]


def big_body(megabytes: float) -> bytes:
    count = int(megabytes * 1e6) // len(POINT)
    return b'{"points":[' + POINT * count + b'{"key":"a","step":1,"value":1}]}'


def chunked(body: bytes, chunk: int = 1 << 20) -> Iterator[bytes]:
    for start in range(0, len(body), chunk):
        yield body[start:start + chunk]


def largest_batch() -> bytes:
    points = b",".join(
        b'{"key":"layer/block.%d/rel_drift/ema_0.999","step":%d,"value":0.25}' % (i % 100, i)
        for i in range(50_000))
    return b'{"points":[' + points + b"]}"


def scenario(name: str, body: bytes, *, stream: bool = False,
             env: dict[str, str] | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, \
            LocalServer(Path(tmp) / "data", env=env or {}) as server:
        assert server.proc is not None
        pid = server.proc.pid
        with httpx.Client(base_url=server.url, timeout=120) as client:
            run_id = client.post("/api/runs", json={"project": "bench", "name": name}).json()["id"]
            with HealthPoller(server.url) as poller:
                time.sleep(1.0)  # baseline
                rss_before = status_kib(pid, "VmRSS")
                hwm_before = status_kib(pid, "VmHWM")
                begin = time.perf_counter()
                response = client.post(
                    f"/api/runs/{run_id}/metrics", content=chunked(body) if stream else body,
                    headers={"content-type": "application/json"})
                end = time.perf_counter()
                time.sleep(0.3)
            baseline = poller.between(begin - 1.0, begin - 0.05)
            during = poller.between(begin, end)
            hwm_after = status_kib(pid, "VmHWM")
    growth_mb = (max(hwm_after, hwm_before) - rss_before) / 1024 if hwm_after > hwm_before \
        else 0.0
    return {
        "name": name, "mb": len(body) / 1e6, "status": response.status_code,
        "answer": response.json().get("error", {}).get("message", response.text)[:60],
        "seconds": end - begin, "rss_growth_mb": growth_mb,
        "base_p50": statistics.median(baseline), "base_max": max(baseline),
        "p50": statistics.median(during) if during else float("nan"),
        "max": max(during) if during else float("nan"), "polls": len(during),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=150.0, help="size of the huge body, MB")
    args = parser.parse_args()
    huge = big_body(args.mb)
    rows = [
        scenario("refused, Content-Length", huge),
        scenario("refused, chunked", huge, stream=True),
        scenario("largest accepted batch", largest_batch()),
        scenario("no byte cap (reference)", huge, env={"EMABOARD_MAX_BODY_BYTES": str(1 << 30)}),
    ]
    print(f"{'scenario':<26} {'body MB':>8} {'answer':>6} {'s':>6} {'RSS +MB':>8} "
          f"{'health p50/max ms (idle)':>25} {'during':>16} {'added max ms':>13}")
    for row in rows:
        print(f"{row['name']:<26} {row['mb']:>8.1f} {row['status']:>6} {row['seconds']:>6.2f} "
              f"{row['rss_growth_mb']:>8.1f} {row['base_p50']:>12.1f} / {row['base_max']:<10.1f}"
              f"{row['p50']:>7.1f} / {row['max']:<7.1f}"
              f"{row['max'] - row['base_max']:>12.1f}")  # type: ignore[operator]
    for row in rows:
        print(f"  {row['name']}: {row['polls']} health polls during the request; "
              f"answer {row['answer']!r}")


if __name__ == "__main__":
    main()

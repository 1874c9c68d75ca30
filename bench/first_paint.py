"""Dashboard first paint for a remote user, measured from navigation start in headless Chromium.

A real server (``python -m emaboard_server serve``, SQLite) holds one run with two
200,000-point series (``train/loss``, ``weights/rel_drift/ema_0.999``) and 150 layers × 2,000
stats steps (every 100 steps; ``--layer-every``) of ``layer/<path>/rel_drift/ema_0.999``:
700,000 points.
Each repetition opens ``/run.html?id=…`` in a fresh browser context (cold cache) and reads
the page's User Timing marks, which count from navigation start (``performance.timeOrigin``):

- ``emaboard:first-chart``: the first chart is drawn (its ``Plotly.react`` resolved);
- ``emaboard:all-views``: every view is drawn: the line charts, the layer heatmap, the
  snapshot table (the page's ``data-state`` turns ``ready``).

Four network conditions are measured side by side, interleaved round by round: loopback
and a throttled link (Chromium's network emulation: ``--mbit`` Mbit/s both ways,
``--rtt-ms`` round trip), each with compression (the browser's own ``Accept-Encoding``)
and without (``Accept-Encoding: identity`` forced through the DevTools protocol). The bytes
each page load transferred come from the Resource Timing entries.

    .venv/bin/python bench/first_paint.py                 # 5 rounds
    .venv/bin/python bench/first_paint.py --repeats 3 --mbit 20 --rtt-ms 40
    .venv/bin/python bench/first_paint.py --layer-every 2000   # 150 layers × 100 steps
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, sync_playwright

from emaboard_server.local_server import LocalServer

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"]
STEPS = 200_000
LONG_KEYS = ("train/loss", "weights/rel_drift/ema_0.999")
N_LAYERS = 150
LAYER_EVERY = 100  # 2,000 stats steps per layer
MARKS = ("emaboard:first-chart", "emaboard:all-views")
# Where the time goes (the page's own marks, printed with --detail).
STAGES = ("emaboard:requests", "emaboard:series-requests", "emaboard:start", "emaboard:hello",
          "emaboard:first-data", "emaboard:plotly", "emaboard:first-chart",
          "emaboard:line-charts", "emaboard:all-views")


def run_points(layer_every: int) -> list[dict[str, object]]:
    """The run's points: two long series and 150 layers of relative drift."""
    points: list[dict[str, object]] = [
        {"key": key, "step": step, "value": 1.0 / (1 + step * (k + 1) / 1000) + (step % 7) / 1e4}
        for k, key in enumerate(LONG_KEYS) for step in range(STEPS)
    ]
    points += [
        {"key": f"layer/blocks.{i}.mlp/rel_drift/ema_0.999", "step": step,
         "value": (1 + i / N_LAYERS) / (1 + step / 20_000)}
        for i in range(N_LAYERS) for step in range(0, STEPS, layer_every)
    ]
    return points


def fill_run(url: str, layer_every: int) -> int:
    with httpx.Client(base_url=url, timeout=300) as client:
        run = client.post("/api/runs", json={"project": "bench", "name": "first-paint"}).json()
        points = run_points(layer_every)
        for start in range(0, len(points), 20_000):
            client.post(f"/api/runs/{run['id']}/metrics",
                        json={"points": points[start:start + 20_000]}).raise_for_status()
        return int(run["id"])


def measure(browser: Browser, url: str, *, mbit: float | None, rtt_ms: float,
            gzip: bool) -> dict[str, float]:
    """One cold page load; the marks in ms from navigation start, and the bytes received."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    if not gzip:
        cdp.send("Network.setExtraHTTPHeaders", {"headers": {"Accept-Encoding": "identity"}})
    if mbit is not None:
        rate = mbit * 1e6 / 8  # bytes/s
        cdp.send("Network.emulateNetworkConditions", {
            "offline": False, "latency": rtt_ms, "downloadThroughput": rate,
            "uploadThroughput": rate})
    page.goto(url, wait_until="commit")
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
    marks = page.evaluate("names => names.map(n => performance.getEntriesByName(n)[0]?.startTime)",
                          list(STAGES))
    stages = dict(zip(STAGES, marks, strict=True))
    transferred = page.evaluate(
        "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".reduce((sum, e) => sum + e.transferSize, 0)")
    context.close()
    return {"first_chart_ms": stages[MARKS[0]], "all_views_ms": stages[MARKS[1]],
            "bytes": transferred, "stages": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mbit", type=float, default=20.0, help="throttled bandwidth, Mbit/s")
    parser.add_argument("--rtt-ms", type=float, default=20.0, help="throttled round trip, ms")
    parser.add_argument("--layer-every", type=int, default=LAYER_EVERY,
                        help="steps between two layer points (150 layers)")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--detail", action="store_true",
                        help="also print the median of each stage of the page's load")
    args = parser.parse_args()
    conditions = {
        "loopback, gzip": dict(mbit=None, gzip=True),
        "loopback, identity": dict(mbit=None, gzip=False),
        f"{args.mbit:g} Mbit/s {args.rtt_ms:g} ms, gzip": dict(mbit=args.mbit, gzip=True),
        f"{args.mbit:g} Mbit/s {args.rtt_ms:g} ms, identity": dict(mbit=args.mbit, gzip=False),
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in conditions}
    with tempfile.TemporaryDirectory() as tmp, LocalServer(Path(tmp)) as server:
        started = time.monotonic()
        run_id = fill_run(server.url, args.layer_every)
        print(f"ingested {len(LONG_KEYS) * STEPS + N_LAYERS * STEPS // args.layer_every:,} points "
              f"in {time.monotonic() - started:.1f} s", file=sys.stderr)
        url = f"{server.url}/run.html?id={run_id}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium,
                                                 args=CHROMIUM_ARGS)
            measure(browser, url, mbit=None, rtt_ms=0, gzip=True)  # warm the server's caches
            for _ in range(args.repeats):
                for name, condition in conditions.items():
                    results[name].append(measure(browser, url, rtt_ms=args.rtt_ms, **condition))
            browser.close()
    report(results, args.repeats, args.detail)


def report(results: dict[str, list[dict[str, Any]]], repeats: int, detail: bool) -> None:
    print(f"median of {repeats} cold loads, ms from navigation start (min–max)")
    print(f"{'condition':<32} {'first chart':>18} {'all views':>18} {'MB received':>12}")
    for name, rows in results.items():
        cells = []
        for field in ("first_chart_ms", "all_views_ms"):
            values = [row[field] for row in rows]
            cells.append(f"{statistics.median(values):6.0f} ({min(values):.0f}–{max(values):.0f})")
        mb = statistics.median(row["bytes"] for row in rows) / 1e6
        print(f"{name:<32} {cells[0]:>18} {cells[1]:>18} {mb:>12.2f}")
        if detail:
            medians = {stage: statistics.median(r["stages"][stage] or 0 for r in rows)
                       for stage in STAGES}
            print("    " + ", ".join(f"{stage.split(':')[1]} {ms:.0f}"
                                     for stage, ms in medians.items()))


if __name__ == "__main__":
    main()

"""Ingest benchmark: a real emaboard server on loopback, several posting processes, websockets.

Each of ``--clients`` processes streams batches of ``--batch`` points to its own run for
``--seconds`` (or until it has posted ``--points``); ``--ws-clients`` websocket clients (one
asyncio process) watch those runs, round-robin. Every batch carries one ``bench/marker`` point
whose value is the Unix time it was posted, so a websocket client measures ingest -> delivery
latency from the markers it receives (sender and receivers share the machine's clock).

Prints sustained points/s (points the server acknowledged as stored / wall time of the
posting phase) and the delivery latency p50/p99 in ms. All processes share the machine's
cores with the server, as they would on one workstation.

    .venv/bin/python bench/ingest.py                    # 4 clients, 10 websockets, 10 s
    .venv/bin/python bench/ingest.py --seconds 3        # a quick look
    .venv/bin/python bench/ingest.py --url http://127.0.0.1:8000   # against a running server

With ``--database-url postgresql+psycopg://...`` the same load runs twice in one run, first
against a server on a fresh SQLite file, then against one on that PostgreSQL database
(``--workers N`` server processes there), and a table compares the two::

    .venv/bin/python bench/ingest.py --clients 1 --batch 5000 --points 200000 --ws-clients 0 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

``--paired`` starts every configuration's server at once and sends each batch to each in
turn from one client, so that they all meet the machine in the same state (its speed drifts
by ±25 % over seconds, more than the differences measured)::

    .venv/bin/python bench/ingest.py --paired --batch 5000 --points 1000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench

``--variant 'LABEL: NAME=VALUE ...'`` adds, for every database, a server started with those
environment variables too (a setting such as ``EMABOARD_WS_SEND_INTERVAL_MS=100``, or
``PYTHONPATH`` pointing at another checkout's ``backend`` folder to measure a change side by
side with the code before it; ``EMABOARD_DATABASE_URL`` there replaces the PostgreSQL database
only, for code that needs another schema revision)::

    .venv/bin/python bench/ingest.py --repeats 3 \\
        --variant '100 ms: EMABOARD_WS_SEND_INTERVAL_MS=100'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import re
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from emaboard_server.local_server import LocalServer

MARKER = re.compile(r'"key":"bench/marker","step":\d+,"value":([-0-9.eE+]+)')
KEYS_PER_BATCH = 10


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (posters, watcher)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def batch_body(step: int, steps: int, keys: list[str]) -> bytes:
    """A JSON batch of ``len(keys) * steps`` points plus the marker, encoded cheaply."""
    parts = [
        f'{{"key":"{key}","step":{step + i},"value":{i * 0.5},"wall_time":0.0}}'
        for i in range(steps)
        for key in keys
    ]
    now = time.time()
    parts.append(f'{{"key":"bench/marker","step":{step},"value":{now!r},"wall_time":{now!r}}}')
    return ('{"points":[' + ",".join(parts) + "]}").encode()


def post_batches(
    url: str, run_id: int, batch: int, seconds: float, start_at: float, rate: float,
    results: mp.Queue, max_points: int = 0,
) -> None:
    """One training process: post ``batch``-point batches until ``seconds`` have passed (or,
    when ``max_points`` > 0, until that many points were posted), at most ``rate`` batches
    per second (0: as fast as the server answers)."""
    steps = max(1, (batch - 1) // KEYS_PER_BATCH)
    keys = [f"train/k{k}" for k in range(KEYS_PER_BATCH)]
    posted = inserted = step = 0
    round_trips: list[float] = []
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=30.0) as client:
        time.sleep(max(0.0, start_at - time.time()))
        begin = time.perf_counter()
        while (posted < max_points if max_points > 0
               else time.perf_counter() - begin < seconds):
            body = batch_body(step, steps, keys)
            sent = time.perf_counter()
            response = client.post(f"/api/runs/{run_id}/metrics", content=body, headers=headers)
            round_trips.append((time.perf_counter() - sent) * 1000)
            if rate > 0:
                time.sleep(max(0.0, begin + len(round_trips) / rate - time.perf_counter()))
            response.raise_for_status()
            answer = response.json()
            posted += answer["accepted"]
            inserted += answer["inserted"]
            step += steps
        elapsed = time.perf_counter() - begin
    results.put((posted, inserted, elapsed, round_trips))


async def watch(ws_url: str, run_ids: list[int], n: int, done: Any) -> list[float]:
    """``n`` websocket clients round-robin over ``run_ids`` until ``done`` (an
    ``mp.Event``) is set and a second more has passed; return latencies in ms."""
    latencies: list[float] = []

    async def one(run_id: int) -> None:
        async with websockets.connect(f"{ws_url}/ws/runs/{run_id}", max_size=None) as ws:
            await ws.recv()  # hello
            stop_at = float("inf")
            while time.time() < stop_at:
                if done.is_set() and stop_at == float("inf"):
                    stop_at = time.time() + 1.0
                try:
                    text = await asyncio.wait_for(ws.recv(), timeout=0.2)
                except TimeoutError:
                    continue
                now = time.time()
                latencies.extend((now - float(v)) * 1000 for v in MARKER.findall(str(text)))

    await asyncio.gather(*(one(run_ids[i % len(run_ids)]) for i in range(n)))
    return latencies


def ws_process(ws_url: str, run_ids: list[int], n: int, done: Any, out: mp.Queue) -> None:
    """Run :func:`watch` in its own process and report the latencies."""
    out.put(asyncio.run(watch(ws_url, run_ids, n, done)))


Outcome = tuple[int, int, float, list[float]]  # posted, stored, seconds, POST round trips (ms)


def drive(url: str, args: argparse.Namespace) -> tuple[list[Outcome], list[float]]:
    """Create the runs, start websocket watchers and posters; return their results."""
    run_ids = []
    for i in range(args.clients):
        body = {"project": "bench", "name": f"r{i}-{time.time()}"}
        run_ids.append(httpx.post(f"{url}/api/runs", json=body).json()["id"])
    start_at = time.time() + 2.0
    results: mp.Queue = mp.Queue()
    lat_q: mp.Queue = mp.Queue()
    ws_url = "ws" + url.removeprefix("http")
    done = mp.Event()
    watcher = mp.Process(target=ws_process, args=(ws_url, run_ids, args.ws_clients, done, lat_q))
    watcher.start()
    posters = [
        mp.Process(
            target=post_batches,
            args=(url, rid, args.batch, args.seconds, start_at, args.rate, results,
                  args.points),
        )
        for rid in run_ids
    ]
    for p in posters:
        p.start()
    outcomes = [results.get() for _ in posters]
    done.set()
    latencies = sorted(lat_q.get())
    for p in [*posters, watcher]:
        p.join()
    return outcomes, latencies


def report(
    args: argparse.Namespace, outcomes: list[Outcome], lat: list[float]
) -> dict[str, float]:
    """Print the throughput and latency lines; return the figures."""
    posted = sum(o[0] for o in outcomes)
    inserted = sum(o[1] for o in outcomes)
    elapsed = max(o[2] for o in outcomes)
    amount = f"points={args.points}" if args.points else f"seconds={args.seconds}"
    print(f"clients={args.clients} batch={args.batch} ws_clients={args.ws_clients} "
          f"{amount} rate={args.rate or 'max'}")
    print(f"points posted {posted:,}, stored {inserted:,} in {elapsed:.2f} s")
    figures = {"points_s": inserted / elapsed}
    print(f"sustained ingest: {inserted / elapsed:,.0f} points/s (target >= 100,000)")
    trips = [t for o in outcomes for t in o[3]]
    if len(trips) >= 2:
        q = statistics.quantiles(trips, n=100)
        figures.update(post_p50=q[49], post_p99=q[98])
        print(f"POST round trip over {len(trips)} requests: p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms")
    if len(lat) >= 2:
        q = statistics.quantiles(lat, n=100)
        figures.update(ws_p50=q[49], ws_p99=q[98])
        print(f"ingest->websocket latency over {len(lat)} markers: p50 {q[49]:.1f} ms, "
              f"p99 {q[98]:.1f} ms (target p99 < 100 ms)")
    elif args.ws_clients:
        print("too few websocket deliveries to measure latency")
    return figures


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants (the server's worker processes)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def database_cpu_seconds(url: str) -> float | None:
    """CPU seconds of the PostgreSQL backends connected to ``url``'s database (None when
    the database is not on this machine or not PostgreSQL)."""
    if not url.startswith("postgresql"):
        return None
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        pids = [row[0] for row in connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]
    try:
        return sum(cpu_seconds(pid) for pid in pids)
    except FileNotFoundError:
        return None


def measure(args: argparse.Namespace, label: str, env: dict[str, str]) -> dict[str, float]:
    """Start a server with ``env``, drive the load, print and return its figures."""
    print(f"--- {label} ---")
    with tempfile.TemporaryDirectory() as tmp, LocalServer(
        data_dir=Path(tmp), env=env
    ) as server:
        assert server.proc is not None
        cpu_before = process_tree_cpu_seconds(server.proc.pid)
        clients_before = children_cpu_seconds()
        wall_before = time.perf_counter()
        outcomes, latencies = drive(server.url, args)
        wall = time.perf_counter() - wall_before
        clients_cpu = children_cpu_seconds() - clients_before
        server_cpu = process_tree_cpu_seconds(server.proc.pid) - cpu_before
        db_cpu = database_cpu_seconds(env.get("EMABOARD_DATABASE_URL", ""))
    figures = report(args, outcomes, latencies)
    inserted = sum(o[1] for o in outcomes)
    db_part = "" if db_cpu is None else f", PostgreSQL backends {db_cpu:.2f} s"
    print(f"CPU over the {wall:.1f} s of the run: server {server_cpu:.2f} s{db_part}, posting "
          f"and websocket clients {clients_cpu:.2f} s, on {os.cpu_count()} cores "
          f"(1-min load average at the end: {os.getloadavg()[0]:.1f})")
    total = server_cpu + (db_cpu or 0.0)
    print(f"server{'' if db_cpu is None else ' + database'} CPU: {total:.2f} s for "
          f"{inserted:,} points = {total / inserted * 1e6:.1f} us/point")
    figures["cpu_us_point"] = total / inserted * 1e6
    return figures


def compare(rows: list[tuple[str, list[dict[str, float]]]]) -> None:
    """One table of the configurations' figures (medians over the repeats, and the range
    when there are several), side by side."""
    columns = [("points_s", "points/s", "{:,.0f}"), ("cpu_us_point", "CPU µs/point", "{:.1f}"),
               ("post_p99", "POST p99 ms", "{:.1f}"), ("ws_p50", "ws p50 ms", "{:.1f}"),
               ("ws_p99", "ws p99 ms", "{:.1f}")]
    print(f"medians [min-max] over {len(rows[0][1])} interleaved run(s) of each configuration")
    print("| database | " + " | ".join(title for _, title, _ in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    medians = []
    for label, runs in rows:
        values = {key: [r[key] for r in runs] for key, _, _ in columns
                  if all(key in r for r in runs)}
        median = {key: statistics.median(v) for key, v in values.items()}
        medians.append(median)
        cells = []
        for key, _, form in columns:
            if key not in values:
                cells.append("-")
                continue
            cell = form.format(median[key])
            if len(values[key]) > 1:
                cell += f" [{form.format(min(values[key]))}-{form.format(max(values[key]))}]"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + " |")
    for (label, _), median in zip(rows[1:], medians[1:], strict=True):
        ratio = median["points_s"] / medians[0]["points_s"]
        print(f"ingest {label} / {rows[0][0]}: {ratio:.2f}")


def variant(text: str) -> tuple[str, dict[str, str]]:
    """Parse ``--variant 'LABEL: NAME=VALUE ...'`` into the label and the variables."""
    label, _, assignments = text.partition(":")
    pairs = [item.partition("=") for item in assignments.split()]
    if not label.strip() or not pairs or any(not name or not eq for name, eq, _ in pairs):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected 'LABEL: NAME=VALUE ...', e.g. '100 ms: "
            "EMABOARD_WS_SEND_INTERVAL_MS=100'")
    return label.strip(), {name: value for name, _, value in pairs}


def paired(args: argparse.Namespace, configs: list[tuple[str, dict[str, str]]]) -> None:
    """``--paired``: every configuration's server up at once, and one client posting each
    batch to every server in turn (the order reversed every other batch), so that all of them
    meet the machine in the same state. On the project's machine, back-to-back runs of one
    configuration differed by ±25 % with nothing else running; batch-by-batch pairs share
    that drift.

    Prints, per configuration, the POST round trips (ms) and the points per second of POST
    time (the client's own encoding left out: it is the same for all), and their ratios.
    """
    batches = max(2, (args.points or 200_000) // args.batch)  # quantiles need 2
    steps = max(1, (args.batch - 1) // KEYS_PER_BATCH)
    keys = [f"train/k{k}" for k in range(KEYS_PER_BATCH)]
    headers = {"content-type": "application/json"}
    with contextlib.ExitStack() as stack:
        clients: dict[str, tuple[httpx.Client, int]] = {}
        for label, env in configs:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            server = stack.enter_context(LocalServer(data_dir=Path(tmp), env=env))
            client = stack.enter_context(httpx.Client(base_url=server.url, timeout=30.0))
            run = client.post("/api/runs", json={"project": "bench", "name": f"p{time.time()}"})
            clients[label] = client, run.json()["id"]
        trips: dict[str, list[float]] = {label: [] for label in clients}
        for index in range(batches + 3):  # the first 3 rounds warm up
            body = batch_body(index * steps, steps, keys)
            order = list(clients) if index % 2 == 0 else list(reversed(clients))
            for label in order:
                client, run_id = clients[label]
                sent = time.perf_counter()
                response = client.post(f"/api/runs/{run_id}/metrics", content=body,
                                       headers=headers)
                elapsed = (time.perf_counter() - sent) * 1000
                response.raise_for_status()
                if index >= 3:
                    trips[label].append(elapsed)
    points = steps * len(keys) + 1
    print(f"paired: {batches} batches of {points:,} points to each of {len(configs)} servers, "
          f"one client, alternating (1-min load average at the end: {os.getloadavg()[0]:.1f})")
    print("| database | POST p50 ms | POST mean ms | POST p99 ms | points/s of POST time |")
    print("|---|---:|---:|---:|---:|")
    rates = {}
    for label, times in trips.items():
        rates[label] = points * len(times) / (sum(times) / 1000)
        q = statistics.quantiles(times, n=100)
        print(f"| {label} | {q[49]:.1f} | {statistics.fmean(times):.1f} | {q[98]:.1f} | "
              f"{rates[label]:,.0f} |")
    first = next(iter(rates))
    for label in list(rates)[1:]:
        print(f"ingest {label} / {first}: {rates[label] / rates[first]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--clients", type=int, default=4, help="posting processes (default 4)")
    parser.add_argument("--batch", type=int, default=1000, help="points per request")
    parser.add_argument("--ws-clients", type=int, default=10, help="websocket clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="posting time per client")
    parser.add_argument("--points", type=int, default=0,
                        help="points per client, instead of --seconds (default 0: use seconds)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="batches per second per client (default 0: as fast as possible)")
    parser.add_argument("--url", help="use this running server instead of starting one")
    parser.add_argument("--database-url", help="also run the load against a server on this "
                        "PostgreSQL database, after the SQLite run, and compare")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="server processes for the --database-url runs, one run per "
                        "number given (default 1)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run every configuration this many times, interleaved; the "
                        "table gives medians (default 1)")
    parser.add_argument("--only-database-url", action="store_true",
                        help="skip the SQLite run")
    parser.add_argument("--paired", action="store_true",
                        help="run the configurations' servers at once and send each batch "
                        "to each in turn from one client (--batch, --points; the clients, "
                        "websockets, seconds and repeats are not used)")
    parser.add_argument("--variant", action="append", default=[], type=variant,
                        metavar="'LABEL: NAME=VALUE ...'",
                        help="also run every database configuration with these server "
                        "environment variables, labelled LABEL (repeatable)")
    args = parser.parse_args()
    if args.url:
        report(args, *drive(args.url.rstrip("/"), args))
        return
    configs: list[tuple[str, dict[str, str]]] = []
    if not (args.database_url and args.only_database_url):
        configs.append(("SQLite, 1 process", {}))
    if args.database_url:
        for workers in args.workers:
            label = f"PostgreSQL, {workers} process{'es' if workers > 1 else ''}"
            configs.append((label, {"EMABOARD_DATABASE_URL": args.database_url,
                                    "EMABOARD_WORKERS": str(workers)}))
    # A variant's EMABOARD_DATABASE_URL replaces the PostgreSQL database only (a checkout of
    # older code needs a database at its own schema revision).
    configs += [(f"{label}, {name}", {**env, **{k: v for k, v in extra.items()
                                                if k in env or k != "EMABOARD_DATABASE_URL"}})
                for name, extra in args.variant for label, env in list(configs)]
    if args.paired:
        paired(args, configs)
        return
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in configs}
    for _ in range(args.repeats):
        for label, env in configs:
            runs[label].append(measure(args, label, env))
    if len(configs) > 1 or args.repeats > 1:
        compare([(label, runs[label]) for label, _ in configs])

if __name__ == "__main__":
    main()

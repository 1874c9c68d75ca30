"""An adversarial pass over a running emaboard server (issue 14): path traversal, hostile
safetensors files, Host/Origin combinations, deeply nested and oversized input, slow
connections, and SIGKILLs while a Monitor streams. Prints one line of figures per attack;
docs/security.md records a run. The schemathesis part runs separately (see security.md).

    .venv/bin/python scripts/adversarial_pass.py            # everything, ~3 minutes
    .venv/bin/python scripts/adversarial_pass.py --kills 5  # fewer server kills
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from safetensors.numpy import load_file, save

from emaboard_server.local_server import LocalServer

TOKEN = "adversarial-token"
SECRET = "TOP-SECRET-SENTINEL-7f3a"


def raw_request(port: int, target: str, *, method: str = "GET", host: str | None = None,
                extra: str = "", body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request with ``target`` sent byte for byte (no client normalises it)."""
    host = f"127.0.0.1:{port}" if host is None else host
    head = (f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


# -- path traversal ------------------------------------------------------------------------

DOTS = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "%c0%ae%c0%ae", "..%00",
        "....", "..;", "%u002e%u002e"]
SEPS = ["/", "%2f", "%2F", "%5c", "\\", "%252f", "//"]
TARGETS = ["SECRET", "emaboard.db", "etc/passwd", "pyproject.toml", "snapshots"]
PLACES = ["/{p}", "/vendor/{p}", "/css/{p}", "/api/runs/{p}", "/api/runs/1/snapshots/{p}",
          "/api/runs/1/snapshots/{p}/file", "/api/runs/1/snapshots/best?averager={p}",
          "/api/runs/1/metrics?keys={p}", "/api/runs/1/metrics?prefix={p}"]


def traversal(server: LocalServer) -> dict[str, Any]:
    """Every combination of dot, separator, depth, target and place; an escape is an answer
    holding the sentinel file's text, the SQLite header or /etc/passwd."""
    statuses: Counter[int] = Counter()
    escapes = 0
    for dots, sep, depth, target, place in itertools.product(
            DOTS, SEPS, (1, 3, 6), TARGETS, PLACES):
        payload = (dots + sep) * depth + target
        status, data = raw_request(server.port, place.format(p=payload))
        statuses[status] += 1
        if SECRET.encode() in data or b"SQLite format 3" in data or b"root:x:0" in data:
            escapes += 1
    return {"attempts": sum(statuses.values()), "escapes": escapes,
            "statuses": dict(sorted(statuses.items()))}


# -- hostile safetensors files -------------------------------------------------------------

def _st(header: Any, data: bytes = b"", *, raw: bytes | None = None,
        length: int | None = None) -> bytes:
    text = raw if raw is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _tensor(dtype: str = "F32", shape: list[int] | None = None,
            offsets: list[Any] | None = None) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape if shape is not None else [2, 2],
            "data_offsets": offsets if offsets is not None else [0, 16]}


def hostile_files() -> dict[str, bytes]:
    """Name -> file bytes: broken, hostile or edge-case safetensors files (a few valid)."""
    d16 = bytes(16)
    files = {
        "empty": b"", "seven bytes": b"1234567",
        "length past the end": _st({"w": _tensor()}, d16, length=10_000),
        "length 2^64-1": _st({}, length=2**64 - 1),
        "length 100 MB + 1": _st({}, length=100 * (1 << 20) + 1),
        "length 0": _st(None, raw=b""),
        "header not JSON": _st(None, raw=b"\x00\xff garbage"),
        "header invalid UTF-8": _st(None, raw=b'{"\xff": 1}'),
        "header BOM": _st(None, raw=b'\xef\xbb\xbf{}'),
        "header is a list": _st([1, 2]), "header is a string": _st("x"),
        "header is null": _st(None), "header is a number": _st(1e308),
        "100,000 nested [": _st(None, raw=b"[" * 100_000),
        "100,000 nested {": _st(None, raw=b'{"a":' * 100_000),
        "nested 500 in metadata": _st(None, raw=b'{"__metadata__": {"a": ' + b"[" * 500
                                      + b"]" * 500 + b"}}"),
        "unknown dtype": _st({"w": _tensor("F99")}, d16),
        "lowercase dtype": _st({"w": _tensor("f32")}, d16),
        "negative shape": _st({"w": _tensor(shape=[-1, 4])}, d16),
        "shape product overflow": _st({"w": _tensor(shape=[2**62, 2**62])}, d16),
        "offsets past the data": _st({"w": _tensor(offsets=[0, 1 << 40])}, d16),
        "offsets reversed": _st({"w": _tensor(offsets=[16, 0])}, d16),
        "offsets as floats": _st({"w": _tensor(offsets=[0.0, 16.0])}, d16),
        "offsets missing": _st({"w": {"dtype": "F32", "shape": [2, 2]}}, d16),
        "offsets vs shape": _st({"w": _tensor(offsets=[0, 12])}, bytes(12)),
        "overlapping tensors": _st({"a": _tensor(), "b": _tensor()}, d16),
        "gap between tensors": _st({"a": _tensor(offsets=[0, 16]),
                                    "b": _tensor(offsets=[32, 48])}, bytes(48)),
        "trailing bytes": _st({"w": _tensor()}, bytes(64)),
        "trailing garbage in header": _st(None, raw=b'{"w": {}} trailing'),
        "valid: duplicate tensor names (the last wins)": _st(
            None, raw=b'{"w": ' + json.dumps(_tensor()).encode() + b', "w": '
            + json.dumps(_tensor()).encode() + b"}", data=d16),
        "metadata not an object": _st({"__metadata__": [1]}),
        "metadata values not strings": _st({"__metadata__": {"a": 1}}),
        "metadata 200 KB": _st({"__metadata__": {"a": "x" * 200_000}}),
        "valid: tensor name ../../etc/passwd": _st({"../../etc/passwd": _tensor()}, d16),
        "valid: tensor name empty": _st({"": _tensor()}, d16),
        "valid: tensor name 1 MB": _st({"n" * (1 << 20): _tensor()}, d16),
        "valid: 10,000 tensors": _st({f"t{i}": _tensor(shape=[1], offsets=[4 * i, 4 * i + 4])
                               for i in range(10_000)}, bytes(40_000)),
        "valid: 10 MB of header spaces": _st(None, raw=b"{}" + b" " * (10 << 20)),
        "a zip (torch.save)": b"PK\x03\x04" + bytes(200),
        "a pickle": b"\x80\x04\x95" + bytes(100) + b".",
    }
    valid = {
        "valid": save({"w": np.ones((2, 2), np.float32)}),
        "valid: zero-size tensor": save({"w": np.ones((0, 3), np.float32)}),
        "valid: scalar": save({"w": np.array(1.5, np.float32)}),
        "valid: with metadata": save({"w": np.ones(3, np.float16)}, metadata={"a": "b"}),
        "valid: header padded": _st(None, raw=json.dumps({"w": _tensor()}).encode() + b"   ",
                                   data=d16),
    }
    return {**files, **valid}


def hostile_snapshots(server: LocalServer, http: httpx.Client, run_id: int) -> dict[str, Any]:
    """Upload every hostile file; none may answer 5xx, every stored one must load."""
    outcomes: Counter[int] = Counter()
    slowest = 0.0
    unexpected = []
    for step, (name, content) in enumerate(hostile_files().items()):
        start = time.perf_counter()
        response = http.post(f"/api/runs/{run_id}/snapshots",
                             data={"averager": "hostile", "step": str(step)},
                             files={"file": ("f", content)})
        slowest = max(slowest, time.perf_counter() - start)
        outcomes[response.status_code] += 1
        if response.status_code >= 500 or (name.startswith("valid") !=
                                           (response.status_code == 201)):
            unexpected.append((name, response.status_code, response.text[:120]))
    stored = http.get(f"/api/runs/{run_id}/snapshots").json()
    loadable = 0
    for snapshot in stored:
        body = http.get(snapshot["download_url"]).content
        with tempfile.NamedTemporaryFile(suffix=".safetensors") as tmp:
            tmp.write(body)
            tmp.flush()
            load_file(tmp.name)
            loadable += 1
    return {"files": sum(outcomes.values()), "outcomes": dict(sorted(outcomes.items())),
            "stored": len(stored), "stored_and_loadable": loadable,
            "slowest_s": round(slowest, 2), "unexpected": unexpected}


# -- Host / Origin -------------------------------------------------------------------------

def host_origin(server: LocalServer, run_id: int) -> dict[str, Any]:
    """State-changing requests and reads under hostile Host/Origin pairs; none may succeed."""
    port = server.port
    hosts = [f"evil.example:{port}", f"localhost.evil.example:{port}", f"127.0.0.1.nip.io:{port}",
             "evil.example", f"EVIL.EXAMPLE:{port}", "", f"localhost:{port}@evil.example",
             f"[::ffff:7f00:1]evil:{port}"]
    origins = [None, "http://evil.example", "null", f"http://127.0.0.1:{port}"]
    requests = [("POST", "/api/runs", b'{"project": "x", "name": "y"}'),
                ("DELETE", f"/api/runs/{run_id}", b""), ("GET", "/api/runs", b""),
                ("PATCH", f"/api/runs/{run_id}", b'{"status": "crashed"}')]
    succeeded, statuses = [], Counter()
    for host, origin, (method, path, body) in itertools.product(hosts, origins, requests):
        extra = "Content-Type: application/json\r\n" + (f"Origin: {origin}\r\n" if origin else "")
        status, _ = raw_request(port, path, method=method, host=host, extra=extra, body=body)
        statuses[status] += 1
        if 200 <= status < 300:
            succeeded.append((host, origin, method, path, status))
    # cross-site from an allowed host
    for method, path, body in requests[:2] + requests[3:]:
        status, _ = raw_request(port, path, method=method, extra="Origin: http://evil.example"
                                "\r\nContent-Type: text/plain\r\n", body=body)
        statuses[status] += 1
        if 200 <= status < 300:
            succeeded.append(("127.0.0.1", "http://evil.example", method, path, status))
    return {"attempts": sum(statuses.values()), "succeeded": succeeded,
            "statuses": dict(sorted(statuses.items()))}


# -- nested and oversized JSON -------------------------------------------------------------

def hostile_json(server: LocalServer, run_id: int) -> dict[str, Any]:
    """Deep nesting, huge strings and numbers, bad encodings on every JSON route."""
    bodies = [b"[" * d + b"]" * d for d in (10, 100, 1000, 100_000)]
    bodies += [b'{"a":' * d + b"1" + b"}" * d for d in (100, 10_000)]
    bodies += [b"\xff\xfe{}", b'{"project": "\xed\xa0\x80", "name": "x"}', b"1e999999",
               b'{"project": "p", "name": "n", "config": {"x": 1e400}}',
               b'{"project": "p", "name": "n", "config": {"x": ' + b"9" * 5000 + b"}}",
               b'{"points": [{"key": "k", "step": 1e400, "value": 1}]}',
               b'{"points": [{"key": "k", "step": ' + b"9" * 5000 + b', "value": 1}]}',
               b'{"points": ' + b"[{}]" + b"}", b"\x00" * 1000, b"", b"null", b'"x"']
    routes = [("POST", "/api/runs"), ("PATCH", f"/api/runs/{run_id}"),
              ("POST", f"/api/runs/{run_id}/metrics")]
    statuses: Counter[int] = Counter()
    for (method, path), body in itertools.product(routes, bodies):
        status, _ = raw_request(server.port, path, method=method, body=body,
                                extra="Content-Type: application/json\r\n")
        statuses[status] += 1
    return {"attempts": sum(statuses.values()), "statuses": dict(sorted(statuses.items())),
            "5xx": sum(n for s, n in statuses.items() if s >= 500)}


# -- slow connections ----------------------------------------------------------------------

def _health_latencies(url: str, seconds: float) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            client.get("/api/health").raise_for_status()
            out.append((time.perf_counter() - start) * 1e3)
            time.sleep(0.01)
    return out


def slow_connections(server: LocalServer, n: int = 300) -> dict[str, Any]:
    """``n`` connections that send half a request and then a byte now and then (slowloris);
    /api/health latency before and while they are open."""
    before = _health_latencies(server.url, 2.0)
    socks = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n")
        socks.append(sock)
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            for sock in socks:
                try:
                    sock.sendall(b"X-a: b\r\n")
                except OSError:
                    pass
            stop.wait(1.0)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    during = _health_latencies(server.url, 5.0)
    stop.set()
    dripper.join()
    for sock in socks:
        sock.close()
    return {"connections": n, "health_p50_ms_before": round(statistics.median(before), 1),
            "health_p50_ms_during": round(statistics.median(during), 1),
            "health_max_ms_during": round(max(during), 1)}


# -- SIGKILL while streaming ---------------------------------------------------------------

STREAM_CODE = """
import sys, time
from ema_core import Monitor
url, run_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
mon = Monitor("adversarial", "kills", server=url, token={token!r}, run_dir=run_dir,
              flush_interval_ms=20, max_batch_points=200, request_timeout_s=1.0,
              initial_backoff_s=0.05, max_backoff_s=0.2)
for step in range(steps):
    mon.step(step, {{"a": float(step), "b": -float(step)}})
    time.sleep(0.0005)
mon.finish(timeout_s=20)
"""


def kills_while_streaming(tmp: Path, kills: int, steps: int = 60_000) -> dict[str, Any]:
    """A Monitor streams ``steps`` steps of two keys while the server is SIGKILLed ``kills``
    times (restarted on the same port and data); then ``emaboard sync`` sends what stayed in
    the spool. Every (key, step) must be stored exactly once."""
    import subprocess

    server = LocalServer(tmp / "data", token=TOKEN).start()
    run_dir = tmp / "run"
    code = STREAM_CODE.format(token=TOKEN)
    proc = subprocess.Popen([sys.executable, "-c", code, server.url, str(run_dir), str(steps)])
    done = 0
    while proc.poll() is None and done < kills:
        time.sleep(0.3 + (done % 3) * 0.2)
        server.kill()
        server.start()
        done += 1
    proc.wait(timeout=300)
    from ema_core.spool import sync_spool
    sync_spool(run_dir, server.url, token=TOKEN)
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        run_id = client.get("/api/runs").json()[0]["id"]
        series = client.get(f"/api/runs/{run_id}/metrics", params={
            "keys": ["train/a", "train/b"], "max_points": 1_000_000}).json()["series"]
    server.stop()
    lost = duplicated = 0
    for key, sign in (("train/a", 1.0), ("train/b", -1.0)):
        got = series[key]["steps"]
        duplicated += len(got) - len(set(got))
        lost += len(set(range(steps)) - set(got))
        assert all(v == sign * s for s, v in zip(got, series[key]["values"], strict=True))
    return {"kills": done, "points_sent": 2 * steps, "lost": lost, "duplicated": duplicated}


def timed(name: str, fn: Callable[[], dict[str, Any]]) -> None:
    start = time.perf_counter()
    result = fn()
    print(f"{name} ({time.perf_counter() - start:.1f} s): {json.dumps(result)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--slow-connections", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "SECRET").write_text(SECRET)
        with LocalServer(tmp / "data", token=TOKEN) as server, \
                httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as http:
            (server.data_dir / "SECRET").write_text(SECRET)
            run_id = http.post("/api/runs", json={"project": "adv", "name": "r"}).json()["id"]
            timed("path traversal", lambda: traversal(server))
            timed("hostile safetensors", lambda: hostile_snapshots(server, http, run_id))
            timed("Host/Origin", lambda: host_origin(server, run_id))
            timed("hostile JSON", lambda: hostile_json(server, run_id))
            timed("slow connections", lambda: slow_connections(server, args.slow_connections))
            assert server.proc is not None
            rss_kib = int(Path(f"/proc/{server.proc.pid}/status").read_text()
                          .split("VmRSS:")[1].split()[0])
            print(f"server after all of the above: {server.output().count('Traceback')} "
                  f"tracebacks in its log, RSS {rss_kib // 1024} MB", flush=True)
        timed("SIGKILL while streaming", lambda: kills_while_streaming(tmp / "kills", args.kills))


if __name__ == "__main__":
    main()

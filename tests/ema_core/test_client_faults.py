"""The Monitor against a server that is down, killed, slow or gone (real server, real sockets).

Every test checks over REST that each point arrived exactly once: the series of each key
holds every step once, with the value that was logged at that step.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from ema_core.client import Monitor
from ema_core.spool import SPOOL_FILENAME, spool_summary
from emaboard_server.cli import main as cli_main
from emaboard_server.local_server import LocalServer, free_port
from tests.ema_core.client_utils import find_run, series
from tests.utils.databases import both_databases, server_env
from tests.utils.tcp_proxy import TcpProxy

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.3}
KEYS = ("loss", "acc", "lr")


def _log_steps(mon: Monitor, steps: range) -> None:
    for step in steps:
        mon.step(step, {key: step + i / 10 for i, key in enumerate(KEYS)})


def _assert_all_steps_once(server: LocalServer, name: str, n_steps: int) -> dict:
    run = find_run(server.url, "faults", name)
    got = series(server.url, run["id"], prefix="train/")
    for i, key in enumerate(KEYS):
        assert got[f"train/{key}"]["steps"] == list(range(n_steps))
        assert got[f"train/{key}"]["values"] == [s + i / 10 for s in range(n_steps)]
    return run


@pytest.fixture
def server(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> Iterator[LocalServer]:
    """A server that is NOT started yet (tests start, kill and restart it), on ``database``."""
    with server_env(request, database) as env:
        proc = LocalServer(data_dir=tmp_path / "server-data", port=free_port(), env=env)
        yield proc
        proc.stop()


def test_server_down_at_start_then_up_and_a_resumed_run_replays_its_spool(
    tmp_path: Path, server: LocalServer
) -> None:
    first = Monitor("faults", "late", server.url, run_dir=tmp_path / "r", **FAST)
    _log_steps(first, range(0, 40))
    first.finish(timeout_s=0.5)  # server never seen: everything stays in the spool
    mon = Monitor("faults", "late", server.url, run_dir=tmp_path / "r", resume="allow", **FAST)
    _log_steps(mon, range(40, 150))
    server.start()
    _log_steps(mon, range(150, 300))
    mon.finish(timeout_s=20)

    run = _assert_all_steps_once(server, "late", 300)
    assert run["status"] == "finished"
    assert first.sender_stats.points_spooled == 40 * len(KEYS)
    assert mon.sender_stats.points_spooled > 0  # the early points waited in the spool
    assert spool_summary(tmp_path / "r" / SPOOL_FILENAME)["points"] == 0


@both_databases
def test_sigkill_mid_run_and_restart_on_the_same_data_dir(tmp_path: Path,
                                                          server: LocalServer) -> None:
    server.start()
    mon = Monitor("faults", "killed", server.url, run_dir=tmp_path / "r",
                  max_batch_points=30, **FAST)
    for chunk in range(6):
        _log_steps(mon, range(chunk * 50, chunk * 50 + 50))
        time.sleep(0.05)  # let batches be in flight when the kill lands
    server.kill()
    _log_steps(mon, range(300, 400))
    server.start()
    _log_steps(mon, range(400, 500))
    mon.finish(timeout_s=20)

    run = _assert_all_steps_once(server, "killed", 500)
    assert run["status"] == "finished"
    assert mon.sender_stats.failures > 0


class SlowProxy(TcpProxy):
    """A TCP proxy that holds every chunk from the client for ``delay_s`` before forwarding."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        super().__init__(target_port)
        self.delay_s, self.delayed_chunks = delay_s, 0

    def to_server(self, data: bytes, pair: dict[str, object]) -> bool:
        time.sleep(self.delay_s)
        self.delayed_chunks += 1
        return True


def test_slow_server_never_blocks_the_loop_and_the_spool_takes_the_overflow(
    tmp_path: Path, server: LocalServer
) -> None:
    server.start()
    proxy = SlowProxy(server.port, delay_s=1.0)
    mon = Monitor("faults", "slow", f"http://127.0.0.1:{proxy.port}", run_dir=tmp_path / "r",
                  max_batch_points=20, max_queue_points=60, **FAST)
    slowest_call_s, step = 0.0, 0
    while (proxy.delayed_chunks < 3 or step < 400) and step < 20_000:  # requests in the proxy
        t0 = time.perf_counter()
        mon.step(step, {key: step + i / 10 for i, key in enumerate(KEYS)})
        slowest_call_s = max(slowest_call_s, time.perf_counter() - t0)
        step += 1
        time.sleep(0.002)
    mon.finish(timeout_s=1.5)
    proxy.close()

    assert proxy.delayed_chunks >= 3  # the loop ran while requests were held
    assert slowest_call_s < proxy.delay_s / 2  # no call waited for a delayed request
    assert mon.sender_stats.max_buffer_points <= 60  # memory bound held
    assert mon.sender_stats.points_spooled > 0  # the overflow went to disk
    assert cli_main(["sync", str(tmp_path / "r"), "--server", server.url]) == 0
    run = _assert_all_steps_once(server, "slow", step)
    assert run["status"] == "finished"


def test_finish_with_the_server_gone_returns_in_time_and_sync_uploads_the_rest(
    tmp_path: Path, server: LocalServer
) -> None:
    server.start()
    mon = Monitor("faults", "gone", server.url, run_dir=tmp_path / "r", **FAST)
    _log_steps(mon, range(0, 100))
    time.sleep(0.2)
    server.stop()
    _log_steps(mon, range(100, 250))
    t0 = time.monotonic()
    mon.finish(timeout_s=2.0)
    elapsed_s = time.monotonic() - t0

    assert elapsed_s < 2.0 + 0.5
    summary = spool_summary(tmp_path / "r" / SPOOL_FILENAME)
    assert summary["points"] > 0 and (summary["status"], summary["status_sent"]) == (
        "finished", "0")
    server.start()
    assert cli_main(["sync", str(tmp_path), "--server", server.url]) == 0
    run = _assert_all_steps_once(server, "gone", 250)
    assert run["status"] == "finished"
    assert spool_summary(tmp_path / "r" / SPOOL_FILENAME)["points"] == 0


class RecordingProxy:
    """An HTTP proxy that records, in arrival order, the points the server accepted."""

    def __init__(self, upstream: str) -> None:
        self.accepted: list[tuple[str, int]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    answer = httpx.request(self.command, upstream + self.path, content=body,
                                           headers={"Content-Type": self.headers["Content-Type"]
                                                    or "application/json"}, timeout=5.0)
                    status, content = answer.status_code, answer.content
                except httpx.HTTPError:
                    status, content = 502, b'{"error": {"status": 502, "message": "down"}}'
                if status < 300 and self.path.endswith("/metrics"):
                    recorder.accepted += [(p["key"], p["step"]) for p in json.loads(body)["points"]]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_POST = do_PATCH = do_GET = forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_points_arrive_in_step_order_per_key_across_a_server_restart(
    tmp_path: Path, server: LocalServer
) -> None:
    server.start()
    proxy = RecordingProxy(server.url)
    mon = Monitor("faults", "ordered", proxy.url, run_dir=tmp_path / "r", max_batch_points=25,
                  **FAST)
    for chunk in range(3):
        _log_steps(mon, range(chunk * 40, chunk * 40 + 40))
        time.sleep(0.05)
    server.kill()
    _log_steps(mon, range(120, 200))
    server.start()
    _log_steps(mon, range(200, 300))
    mon.finish(timeout_s=20)
    proxy.close()

    _assert_all_steps_once(server, "ordered", 300)
    assert mon.sender_stats.failures > 0 and mon.sender_stats.points_spooled > 0
    for key in KEYS:
        steps = [step for k, step in proxy.accepted if k == f"train/{key}"]
        assert steps == sorted(steps) and set(steps) == set(range(300))


def test_finish_keeps_retrying_within_its_timeout_while_the_server_restarts(
    tmp_path: Path, server: LocalServer
) -> None:
    server.start()
    mon = Monitor("faults", "restart-at-finish", server.url, run_dir=tmp_path / "r", **FAST)
    _log_steps(mon, range(0, 50))
    deadline = time.monotonic() + 10
    while mon.sender_stats.points_posted < 50 * len(KEYS) and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # the server restarts just as training ends
    _log_steps(mon, range(50, 100))
    restarter = threading.Timer(1.5, server.start)
    restarter.start()
    started = time.monotonic()
    mon.finish(timeout_s=30)  # returned after the first failed attempt (~12 ms) before
    took_s = time.monotonic() - started
    restarter.join()

    run = _assert_all_steps_once(server, "restart-at-finish", 100)
    assert run["status"] == "finished"
    assert 1.0 < took_s < 30 and mon.sender_stats.closed_cleanly
    assert spool_summary(tmp_path / "r" / SPOOL_FILENAME)["points"] == 0

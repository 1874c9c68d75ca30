"""The background sender's error branches against a real server: 413, 422, deleted run."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from torch import nn

from ema_core._rate_limited_log import RateLimitedLogger
from ema_core._sender_config import SenderConfig
from ema_core.client import Monitor
from ema_core.ema import EMA
from emaboard_server.cli import main as cli_main
from emaboard_server.local_server import LocalServer
from tests.ema_core.client_utils import find_run, series

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.2}


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server that takes at most 7 points per request."""
    with LocalServer(data_dir=tmp_path_factory.mktemp("data"),
                       env={"EMABOARD_MAX_POINTS_PER_REQUEST": "7"}) as server:
        yield server


def _wait_until_posted(mon: Monitor, n: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while mon.sender_stats.points_posted < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {mon.sender_stats.points_posted} of {n} points posted")
        time.sleep(0.02)


def test_rate_limited_logger_suppresses_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    log = RateLimitedLogger(logging.getLogger("t"), interval_s=30.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(3):
            log.log(logging.WARNING, "net", "down %d", 1)
        log.log(logging.WARNING, "other", "other kind")
        now[0] += 31.0
        log.log(logging.WARNING, "net", "down %d", 2)

    assert caplog.messages == ["down 1", "other kind", "down 2 (2 similar messages suppressed)"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("flush_interval_ms", -5, "Invalid flush_interval_ms -5: expected a positive number"),
    ("max_backoff_s", "1", "Invalid max_backoff_s '1': expected a positive number"),
    ("request_timeout_s", 0, "Invalid request_timeout_s 0: expected a positive number"),
    ("max_batch_points", 2.5, "Invalid max_batch_points 2.5: expected an int >= 1"),
])
def test_sender_config_rejects_bad_bounds(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SenderConfig(**{field: value})  # type: ignore[arg-type]


def test_413_halves_the_batch_until_the_server_takes_it(tmp_path: Path,
                                                        small_server: LocalServer) -> None:
    mon = Monitor("sender", "big-batches", small_server.url, run_dir=tmp_path,
                  max_batch_points=50, **FAST)
    for step in range(60):
        mon.step(step, {"loss": float(step)})
    mon.finish(timeout_s=20)

    got = series(small_server.url, mon.run_id)
    assert got["train/loss"]["steps"] == list(range(60))
    assert mon.sender_stats.points_spooled == 0


def test_a_rejected_batch_is_dropped_and_the_rest_arrives(
    tmp_path: Path, small_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    mon = Monitor("sender", "rejected", small_server.url, run_dir=tmp_path, max_batch_points=1,
                  **FAST)
    mon._inbox.append(("", 0, 1.0, 0.0))  # an empty key gets past no public method: 422
    mon.step(1, {"loss": 1.0})
    mon.finish(timeout_s=20)

    assert series(small_server.url, mon.run_id)["train/loss"]["steps"] == [1]
    assert "emaboard dropped 1 points: POST /api/runs/" in caplog.text
    assert "answered 422: Invalid point 0 field 'key'" in caplog.text


def test_a_deleted_run_is_created_again(tmp_path: Path, small_server: LocalServer) -> None:
    mon = Monitor("sender", "deleted", small_server.url, run_dir=tmp_path, **FAST)
    mon.step(0, {"loss": 0.0})
    _wait_until_posted(mon, 1)
    old_id = mon.run_id
    assert httpx.delete(f"{small_server.url}/api/runs/{old_id}").status_code == 204
    mon.step(1, {"loss": 1.0})
    mon.finish(timeout_s=20)

    run = find_run(small_server.url, "sender", "deleted")
    assert run["id"] == mon.run_id  # (SQLite may hand out the deleted id again)
    assert series(small_server.url, run["id"])["train/loss"]["steps"] == [1]


def test_statistics_with_keys_over_the_server_limit_are_dropped_with_a_warning(
    tmp_path: Path, small_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    model = nn.Sequential()
    model.add_module("x" * 600, nn.Linear(2, 2))
    model.add_module("ok", nn.Linear(2, 2))
    ema = EMA(model, decays=(0.9,))
    mon = Monitor("sender", "long-keys", small_server.url, run_dir=tmp_path, **FAST)
    mon.watch(ema, stats_every=1)
    with torch.no_grad():
        model.ok.weight.add_(1.0)
    ema.update(model)
    mon.step(0)
    mon.finish(timeout_s=20)

    got = series(small_server.url, mon.run_id)
    assert "layer/ok/rel_drift/ema_0.9" in got and "weights/norm/live" in got
    assert not [key for key in got if "xxx" in key]
    assert f"emaboard dropped statistic 'layer/{'x' * 600}/rel_drift/ema_0.9'" in caplog.text


def test_a_token_server_takes_the_right_token_and_a_wrong_one_spools_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with LocalServer(data_dir=tmp_path / "data", token="s3cret") as server:
        good = Monitor("sender", "token", server.url, token="s3cret", run_dir=tmp_path / "a",
                       **FAST)
        good.step(0, {"loss": 0.5})
        good.finish(timeout_s=20)
        bad = Monitor("sender", "wrong-token", server.url, token="nope",
                      run_dir=tmp_path / "b", **FAST)
        bad.step(0, {"loss": 0.25})
        bad.finish(timeout_s=1)

        assert good.sender_stats.points_posted == 1
        assert bad.run_id is None and bad.sender_stats.points_spooled == 1
        assert "answered 401: Invalid or missing token" in caplog.text
        assert cli_main(["sync", str(tmp_path / "b"), "--server", server.url,
                         "--token", "s3cret"]) == 0
        runs = httpx.get(f"{server.url}/api/runs", headers=server.headers).json()
        assert sorted((r["name"], r["status"]) for r in runs) == [
            ("token", "finished"), ("wrong-token", "finished")]


def test_a_request_still_running_after_finish_keeps_its_client_until_it_ends(
    tmp_path: Path,
) -> None:
    # A server that accepts connections and never answers: the poster is stuck in a request
    # (request_timeout_s) when finish() gives up. Closing the HTTP client and the spool under
    # it would break that request; never closing them leaked a socket (a ResourceWarning).
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        mon = Monitor("p", "stuck", url, run_dir=tmp_path / "r", request_timeout_s=1.5,
                      **FAST)
        mon.step(0, {"loss": 1.0})
        mon.finish(timeout_s=0.3)
        http = mon._api._http
        assert mon._sender.alive() and not http.is_closed  # still in its request
        deadline = time.monotonic() + 10
        while mon._sender.alive():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert http.is_closed  # closed by the thread that ended last
        with pytest.raises(Exception, match="Cannot operate on a closed database"):
            mon.spool.count_points()

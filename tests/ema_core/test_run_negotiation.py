"""Creating the run when the reply to ``POST /api/runs`` is lost after the server committed it
(real server, real sockets): the retry must continue the run it created, not make ``name-2``.

A proxy forwards the first create to the server and closes the client's connection as soon
as the answer comes back, without forwarding it: what a server killed right after its commit,
a proxy dropping the connection or a client timeout on a loaded server does.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ema_core.client import Monitor
from ema_core.spool import SPOOL_FILENAME, spool_summary
from emaboard_server.cli import main as cli_main
from emaboard_server.local_server import LocalServer, free_port
from tests.ema_core.client_utils import series
from tests.utils.databases import both_databases, server_env
from tests.utils.tcp_proxy import TcpProxy, shut

FAST = {"flush_interval_ms": 20, "initial_backoff_s": 0.05, "max_backoff_s": 0.3}
N_STEPS = 200


class CreateReplyDropper(TcpProxy):
    """A TCP proxy to ``target_port`` that drops the server's reply to the first ``POST
    /api/runs``: the request reaches the server, and when the answer arrives the client's
    connection is closed instead. With ``refuse_after``, every connection after that is
    closed at once (the training process died before its retry)."""

    def __init__(self, target_port: int, *, refuse_after: bool = False) -> None:
        self.refuse_after = refuse_after
        self.dropped = threading.Event()
        super().__init__(target_port)

    def relay(self, client: socket.socket) -> None:
        if self.refuse_after and self.dropped.is_set():
            shut(client)
        else:
            super().relay(client)

    def to_server(self, data: bytes, pair: dict[str, object]) -> bool:
        if data.startswith(b"POST /api/runs ") and not self.dropped.is_set():
            pair["create_sent"] = True
        return True

    def to_client(self, data: bytes, pair: dict[str, object]) -> bool:
        if pair.get("create_sent"):  # the server answered: the run is committed
            self.dropped.set()
            return False
        return True


@pytest.fixture
def server(tmp_path: Path, database: str, request: pytest.FixtureRequest) -> Iterator[LocalServer]:
    with server_env(request, database) as env:
        proc = LocalServer(data_dir=tmp_path / "server-data", port=free_port(), env=env)
        proc.start()
        yield proc
        proc.stop()


def _log_steps(mon: Monitor, steps: range) -> None:
    for step in steps:
        mon.step(step, {"loss": step / 2})


def _assert_one_run_holding_every_step_once(server: LocalServer, name: str) -> None:
    runs = httpx.get(f"{server.url}/api/runs", params={"project": "lost"}).json()
    assert [run["name"] for run in runs] == [name]  # no empty orphan, no name-2
    got = series(server.url, runs[0]["id"], prefix="train/")
    assert got["train/loss"]["steps"] == list(range(N_STEPS))
    assert got["train/loss"]["values"] == [step / 2 for step in range(N_STEPS)]


@both_databases
def test_a_create_whose_reply_was_lost_is_retried_into_the_run_it_created(
    tmp_path: Path, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = CreateReplyDropper(server.port)
    mon = Monitor("lost", "reply", proxy.url, run_dir=tmp_path / "r", **FAST)
    with caplog.at_level(logging.WARNING, logger="ema_core"):
        _log_steps(mon, range(N_STEPS))
        mon.finish(timeout_s=20)
    proxy.close()

    assert proxy.dropped.is_set()  # the first create's reply never reached the client
    assert mon.sender_stats.failures > 0
    assert mon.run_name == "reply"
    assert "already exists" not in caplog.text
    _assert_one_run_holding_every_step_once(server, "reply")


@both_databases
def test_sync_after_a_lost_create_reply_continues_the_run_it_created(
    tmp_path: Path, server: LocalServer
) -> None:
    proxy = CreateReplyDropper(server.port, refuse_after=True)
    mon = Monitor("lost", "sync", proxy.url, run_dir=tmp_path / "r", **FAST)
    _log_steps(mon, range(N_STEPS))
    mon.finish(timeout_s=1.0)  # the server is never reached again: all stays in the spool
    proxy.close()
    spooled = spool_summary(tmp_path / "r" / SPOOL_FILENAME)
    assert proxy.dropped.is_set() and mon.run_name is None
    assert spooled["points"] == N_STEPS and len(spooled["creation_id"]) == 32

    assert cli_main(["sync", str(tmp_path / "r"), "--server", server.url]) == 0
    _assert_one_run_holding_every_step_once(server, "sync")
    assert spool_summary(tmp_path / "r" / SPOOL_FILENAME)["server_name"] == "sync"

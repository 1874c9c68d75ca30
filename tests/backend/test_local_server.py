"""emaboard_server.local_server: the one runner of a local server (demo, tests, bench)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from emaboard_server.local_server import (
    LocalServer,
    ServerStartError,
    check_port_free,
    free_port,
    wait_healthy,
)


def test_check_port_free_accepts_a_free_port() -> None:
    check_port_free("127.0.0.1", free_port())


def test_check_port_free_names_the_ways_out_of_a_taken_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerStartError, match=re.escape(
                f"Port {port} on 127.0.0.1 is in use (Address already in use): pass --port "
                f"with a free port, or --server http://127.0.0.1:{port} to stream to the "
                "server running there")):
            check_port_free("127.0.0.1", port)


def test_local_server_that_does_not_answer_is_stopped_and_reported(tmp_path: Path) -> None:
    server = LocalServer(tmp_path / "data", startup_timeout_s=0.01)
    with pytest.raises(ServerStartError) as info:
        server.start()
    assert str(info.value).startswith(
        f"The server at {server.url} did not answer /api/health within 0.01 s; its log "
        f"{server.log_path} ends:\n"
    )
    assert server.proc is not None and server.proc.returncode is not None  # stopped


def test_wait_healthy_reports_an_exited_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(ServerStartError, match=re.escape("The server exited with status 3")):
        wait_healthy(f"http://127.0.0.1:{free_port()}", timeout_s=30, proc=proc)


def test_token_kill_and_restart_on_the_same_port_and_data(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "data", token="tok") as server:
        created = httpx.post(server.url + "/api/runs", headers=server.headers,
                             json={"project": "p", "name": "r"})
        assert created.status_code == 201
        assert httpx.get(server.url + "/api/runs").status_code == 401
        port = server.port
        server.kill()
        server.start()
        assert server.port == port
        runs = httpx.get(server.url + "/api/runs", headers=server.headers).json()
        assert [run["name"] for run in runs] == ["r"]
    assert server.proc is not None and server.proc.returncode is not None
    assert f"emaboard serving http://127.0.0.1:{port}/" in server.output()
    assert server.log_path == tmp_path / "data" / "server.log"


def test_a_failing_block_prints_the_servers_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError, match="boom"), LocalServer(tmp_path / "data") as server:
        raise RuntimeError("boom")
    err = capsys.readouterr().err
    assert f"--- server log {server.log_path} ---" in err
    assert "emaboard serving" in err

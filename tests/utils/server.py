"""A real emaboard server in a subprocess (uvicorn on a free loopback port) for tests.

Usage::

    with ServerProcess(data_dir=tmp_path / "data") as server:
        httpx.get(server.url + "/api/health")
        server.kill()      # SIGKILL, like a crash
        server.start()     # same port, same data_dir
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m emaboard_server serve`` on 127.0.0.1:<free port>, polled until /api/health
    answers."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        token: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.token = token
        self.extra_env = env or {}
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> ServerProcess:
        env = {**os.environ, **self.extra_env}
        if self.token:
            env["EMABOARD_TOKEN"] = self.token
        cmd = [
            sys.executable, "-m", "emaboard_server", "serve",
            "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir),
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"server did not answer within {self.startup_timeout_s} s:\n{self.output()}"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGINT (like Ctrl-C), then SIGKILL if it does not exit within ``timeout_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is not None:
            sys.stderr.write(f"--- server output ---\n{self.output()}\n")
        self._log.close()

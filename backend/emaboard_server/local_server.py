"""``python -m emaboard_server serve`` in a child process: the one local-server runner of the
demo (``emaboard demo``), the test suite and the benchmarks (``bench/``).

A child process rather than a thread: the server and the caller do not share one
interpreter (GIL), the server's log goes to a file, and stopping it is a signal, whatever
state it is in. Usage::

    with LocalServer(data_dir) as server:      # a free loopback port, polled until healthy
        httpx.get(server.url + "/api/health")
        server.kill()                          # SIGKILL, like a crash
        server.start()                         # same port, same data_dir
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

logger = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The local server could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise if ``host:port`` cannot be bound (another server is probably listening there).

    Connections of a server that just died (TIME_WAIT) do not count, as for uvicorn's own
    bind (``SO_REUSEADDR``).

    Raises:
        ServerStartError: The port is taken; the message names the two ways out.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ServerStartError(
                f"Port {port} on {host} is in use ({error.strerror}): pass --port with a free "
                f"port, or --server http://{host}:{port} to stream to the server running there"
            ) from error


def wait_healthy(
    url: str, *, timeout_s: float, proc: subprocess.Popen[Any] | None = None
) -> None:
    """Poll ``url/api/health`` every 0.1 s until it answers 200.

    Raises:
        ServerStartError: ``proc`` exited, or no answer within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"The server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ServerStartError(f"The server at {url} did not answer /api/health within {timeout_s} s")


class LocalServer:
    """``python -m emaboard_server serve`` on ``host:port`` with its data (SQLite, snapshots)
    in ``data_dir``, its output appended to ``log_path``.

    Entering the context starts it and waits for ``/api/health``; leaving stops it (SIGINT,
    like Ctrl-C, then SIGKILL after ``stop_timeout_s``) and, when the block raised, writes the
    end of the server's log to stderr.

    Args:
        data_dir: The server's ``--data-dir`` (created when missing).
        host: The address it binds.
        port: Its port (default: a free one, kept across restarts).
        token: ``EMABOARD_TOKEN`` for the server.
        env: More environment variables for the server (``EMABOARD_*`` settings).
        log_path: Where its output goes (default ``data_dir/server.log``).
        startup_timeout_s: How long :meth:`start` waits for ``/api/health``, in seconds.
        stop_timeout_s: How long :meth:`stop` waits after SIGINT before SIGKILL, in seconds.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        token: str | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = free_port(host) if port is None else port
        self.token = token
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path is not None else self.data_dir / "server.log"
        self.startup_timeout_s, self.stop_timeout_s = startup_timeout_s, stop_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header of its token (empty without one)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> LocalServer:
        """Start the child and wait until it is healthy.

        Raises:
            ServerStartError: The port is taken, or the server exited or did not answer; the
                message ends with the tail of its log.
        """
        check_port_free(self.host, self.port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        if self.token:
            env["EMABOARD_TOKEN"] = self.token
        cmd = [
            sys.executable, "-m", "emaboard_server", "serve", "--host", self.host,
            "--port", str(self.port), "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_healthy(self.url, timeout_s=self.startup_timeout_s, proc=self.proc)
        except ServerStartError as error:
            self.stop()
            raise ServerStartError(
                f"{error}; its log {self.log_path} ends:\n{self.tail()}"
            ) from None
        logger.info("server pid %d on %s, log in %s", self.proc.pid, self.url, self.log_path)
        return self

    def wait(self) -> int:
        """Block until the server exits (Ctrl-C reaches it too); return its exit status."""
        if self.proc is None:
            return 0
        return self.proc.wait()

    def stop(self) -> None:
        """SIGINT, then SIGKILL after ``stop_timeout_s``; a no-op when it is not running."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("server did not stop within %s s: killing it", self.stop_timeout_s)
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def output(self) -> str:
        """Everything the server wrote to its log so far ("" before it started)."""
        if not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")

    def tail(self, n_lines: int = 20) -> str:
        """The last ``n_lines`` lines of its log."""
        return "\n".join(self.output().splitlines()[-n_lines:])

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is not None:
            sys.stderr.write(f"--- server log {self.log_path} ---\n{self.tail(200)}\n")

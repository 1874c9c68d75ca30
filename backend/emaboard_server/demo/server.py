"""The demo's own server: ``python -m emaboard_server serve`` in a child process.

A child process rather than a thread: the server and the training loop do not share one
interpreter (GIL), the server's log goes to a file instead of over the progress bar, and
stopping it is a signal, whatever state it is in.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

logger = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The demo's server could not be started."""


def check_port_free(host: str, port: int) -> None:
    """Raise if ``host:port`` cannot be bound (another server is probably running there).

    Raises:
        ServerStartError: The port is taken; the message names the two ways out.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ServerStartError(
                f"Port {port} on {host} is in use ({error.strerror}): pass --port with a free "
                f"port, or --server http://{host}:{port} to stream to the server running there"
            ) from error


def wait_healthy(
    url: str, *, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url/api/health`` until it answers 200.

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
    """``python -m emaboard_server serve`` on ``host:port`` with SQLite in ``data_dir``.

    Its output goes to ``data_dir/server.log``. Use as a context manager: entering starts
    it and waits for ``/api/health``; leaving sends SIGINT (like Ctrl-C) and, if it has not
    exited within ``stop_timeout_s``, kills it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        startup_timeout_s: float = 60.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host, self.port = host, port
        self.startup_timeout_s, self.stop_timeout_s = startup_timeout_s, stop_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self) -> LocalServer:
        """Start the child and wait until it is healthy.

        Raises:
            ServerStartError: The port is taken, or the server exited or did not answer; the
                message ends with the tail of its log.
        """
        check_port_free(self.host, self.port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "emaboard_server", "serve", "--host", self.host,
            "--port", str(self.port), "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(self.url, timeout_s=self.startup_timeout_s, proc=self.proc)
        except ServerStartError as error:
            self.stop()
            raise ServerStartError(
                f"{error}; its log {self.log_path} ends:\n{self._tail()}"
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

    def _tail(self, n_lines: int = 20) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n_lines:])

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

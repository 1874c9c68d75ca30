"""A TCP proxy on a free loopback port, for tests that put faults between a client and a real
server: a subclass decides what each pair of connections does with its bytes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def shut(*socks: socket.socket) -> None:
    """Shut down and close each socket (already closed: nothing)."""
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


class TcpProxy:
    """Accepts on ``127.0.0.1:<free port>`` and relays each client connection to
    ``target_port``: every chunk passes :meth:`to_server` or :meth:`to_client` first (by
    default unchanged)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.relay(client)

    def relay(self, client: socket.socket) -> None:
        """Connect to the target and copy both ways, each way in a thread of its own."""
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        pair: dict[str, object] = {}  # what the hooks keep about this pair of connections
        for src, dst, hook in ((client, upstream, self.to_server),
                               (upstream, client, self.to_client)):
            threading.Thread(target=self._pump, args=(src, dst, hook, pair),
                             daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket,
              hook: Callable[[bytes, dict[str, object]], bool], pair: dict[str, object]) -> None:
        try:
            while (data := src.recv(65536)) and hook(data, pair):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            shut(src, dst)

    def to_server(self, data: bytes, pair: dict[str, object]) -> bool:
        """Called with each chunk from the client before it is forwarded; False closes both
        connections instead."""
        return True

    def to_client(self, data: bytes, pair: dict[str, object]) -> bool:
        """Called with each chunk from the server before it is forwarded; False closes both
        connections instead."""
        return True

    def close(self) -> None:
        """Stop accepting (connections already relayed run on)."""
        self._listener.close()

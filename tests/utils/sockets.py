"""Which process holds the server end of a TCP connection (Linux ``/proc``): tells which
worker of a multi-process server accepted a client's connection."""

from __future__ import annotations

import os
from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid``."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _inode(server_port: int, client_port: int) -> str | None:
    """The inode of the socket whose local port is ``server_port`` and remote port
    ``client_port`` (``/proc/net/tcp`` and ``tcp6``)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (int(local.rsplit(":", 1)[1], 16) == server_port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port):
                return inode
    return None


def server_pid(server_port: int, client_port: int, candidates: list[int]) -> int | None:
    """The pid among ``candidates`` holding the server end of the connection from
    ``client_port`` (None when none does, e.g. not accepted yet)."""
    inode = _inode(server_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in candidates:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    return None

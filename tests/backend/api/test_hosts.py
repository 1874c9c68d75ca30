"""DNS rebinding: the Host header is validated (issue 14, item 3), against a real server.

Before the fix, ``Host: evil.example:PORT`` with ``Origin: http://evil.example:PORT`` (a
rebound page is same-origin) gave 201 on ``POST /api/runs``, 204 on ``DELETE`` and opened
websockets. A cross-site websocket was refused with a bare HTTP 403 at the handshake
instead of a close with its code and reason (item 5).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from emaboard_server.app.api.auth import CROSS_ORIGIN
from emaboard_server.app.api.close_codes import WS_4400_INVALID_HOST, WS_4403_CROSS_ORIGIN
from emaboard_server.app.api.hosts import INVALID_HOST_REASON, HostPolicy, host_name
from emaboard_server.local_server import LocalServer
from tests.backend.conftest import assert_error


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with LocalServer(tmp_path_factory.mktemp("hosts") / "data") as proc:
        yield proc


@pytest.fixture
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def rebound(server: LocalServer, host: str = "evil.example") -> dict[str, str]:
    """What a page on http://<host>:<port> sends once <host> resolves to 127.0.0.1."""
    return {"Host": f"{host}:{server.port}", "Origin": f"http://{host}:{server.port}"}


def refused(host: str, port: int) -> str:
    return (f"Invalid Host header '{host}:{port}': not in allowed_hosts; if this server is "
            "reached under that name, add it to EMABOARD_ALLOWED_HOSTS")


def test_a_rebound_page_can_neither_write_nor_read(http: httpx.Client,
                                                   server: LocalServer) -> None:
    run = http.post("/api/runs", json={"project": "p", "name": "victim"}).json()
    headers = rebound(server)
    message = refused("evil.example", server.port)
    assert_error(http.post("/api/runs", json={"project": "p", "name": "x"}, headers=headers),
                 400, message)
    assert_error(http.delete(f"/api/runs/{run['id']}", headers=headers), 400, message)
    assert_error(http.get("/api/runs", headers={"Host": headers["Host"]}), 400, message)
    assert http.get("/", headers={"Host": headers["Host"]}).status_code == 400
    assert http.get(f"/api/runs/{run['id']}").status_code == 200  # nothing was deleted
    assert [r["name"] for r in http.get("/api/runs").json()] == ["victim"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST", "10.1.2.3"])
def test_loopback_names_and_ip_addresses_are_served(
    http: httpx.Client, server: LocalServer, host: str
) -> None:
    response = http.get("/api/runs", headers={"Host": f"{host}:{server.port}"})
    assert response.status_code == 200, response.text


def test_a_missing_host_is_refused(server: LocalServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/runs HTTP/1.0\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]


async def _close_of(url: str, **kwargs: Any) -> tuple[int, str]:
    async with websockets.connect(url, **kwargs) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


def test_rebound_websocket_is_closed_with_4400(server: LocalServer) -> None:
    # The URL names evil.example (so Host and Origin do), the socket goes to 127.0.0.1.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    url = f"ws://evil.example:{server.port}/ws/runs"
    code, reason = asyncio.run(_close_of(url, sock=sock, origin=rebound(server)["Origin"]))
    assert (code, reason) == (WS_4400_INVALID_HOST, INVALID_HOST_REASON)


def test_cross_site_websocket_is_closed_with_4403_not_refused_with_http_403(
    server: LocalServer,
) -> None:
    code, reason = asyncio.run(_close_of(f"{server.ws_url}/ws/runs",
                                         origin="http://evil.example"))
    assert (code, reason) == (WS_4403_CROSS_ORIGIN, CROSS_ORIGIN)

    async def same_site() -> str:
        async with websockets.connect(f"{server.ws_url}/ws/runs",
                                      origin=f"http://127.0.0.1:{server.port}") as ws:
            return str(await ws.recv())

    assert '"type": "runs"' in asyncio.run(same_site())


def test_compose_names_are_allowed_when_configured(tmp_path: Any) -> None:
    env = {"EMABOARD_ALLOWED_HOSTS": "localhost,127.0.0.1,::1,server"}
    with LocalServer(tmp_path / "data", env=env) as proc:
        ok = httpx.get(f"{proc.url}/api/runs", headers={"Host": f"server:{proc.port}"})
        assert ok.status_code == 200
        bad = httpx.get(f"{proc.url}/api/runs", headers={"Host": f"evil.example:{proc.port}"})
        assert bad.status_code == 400



@pytest.mark.parametrize(
    ("allowed", "bind", "host", "ok"),
    [
        (["localhost"], "127.0.0.1", "localhost:8000", True),
        (["localhost"], "127.0.0.1", "evil.example:8000", False),
        (["localhost"], "127.0.0.1", "localhost.evil.example", False),
        (["localhost"], "myhost.lan", "myhost.lan:8000", True),  # the bound name
        (["localhost"], "0.0.0.0", "0.0.0.0:8000", True),  # an IP address
        (["*.example.com"], "127.0.0.1", "a.example.com", True),
        (["*.example.com"], "127.0.0.1", "example.com.evil", False),
        (["*"], "127.0.0.1", "anything", True),
        (["localhost"], "127.0.0.1", None, False),
        (["localhost"], "::1", "[::1]:8000", True),
        (["localhost"], "127.0.0.1", "localhost.:8000", True),  # a fully qualified name
        # malformed: userinfo, text after the brackets, spaces, an empty header
        (["localhost"], "127.0.0.1", "localhost:8000@evil.example", False),
        (["localhost"], "127.0.0.1", "[::ffff:7f00:1]evil:8000", False),
        (["localhost"], "127.0.0.1", "local host", False),
        (["localhost"], "127.0.0.1", "", False),
        (["localhost"], "127.0.0.1", "localhost:99999999", False),
    ],
)
def test_host_policy(allowed: list[str], bind: str, host: str | None, ok: bool) -> None:
    assert HostPolicy(allowed, bind).allows(host) is ok


def test_host_name() -> None:
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("example.com") == "example.com"
    assert host_name("a@b") is None and host_name("[::1]x") is None


@pytest.mark.parametrize("host", ["localhost:{port}@evil.example", "[::ffff:7f00:1]evil:{port}"])
def test_malformed_hosts_are_refused(server: LocalServer, host: str) -> None:
    # Found by scripts/adversarial_pass.py: the port split used to read these as localhost
    # and ::ffff:7f00:1. No browser sends them, but a Host that is not a host is refused.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET /api/runs HTTP/1.1\r\nHost: {host.format(port=server.port)}\r\n"
                     "Connection: close\r\n\r\n".encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]

"""``emaboard serve`` with two processes on PostgreSQL: live fan-out through LISTEN/NOTIFY.

A websocket is served by one process; points are posted through 40 connections, 20 accepted
by each process (told apart by which process holds the connection's server socket, from
``/proc``). Every point reaches the websocket, also after the processes' listening
connections are killed (``pg_terminate_backend``): each reconnects and tells its websockets
to resync.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from emaboard_server.app.fanout import APPLICATION_NAME
from emaboard_server.local_server import LocalServer
from tests.utils.databases import server_env
from tests.utils.sockets import child_pids, server_pid

pytestmark = pytest.mark.e2e
PER_WORKER = 20
POINTS_PER_POST = 25


def conninfo(server: LocalServer) -> str:
    url = server.env["EMABOARD_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
    return url


def listener_pids(server: LocalServer) -> list[int]:
    with psycopg.connect(conninfo(server), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()", (APPLICATION_NAME,)).fetchall()
    return sorted(row[0] for row in rows)


def wait_listeners(server: LocalServer, n: int, other_than: list[int] = ()) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = listener_pids(server)
        if len(pids) == n and not set(pids) & set(other_than):
            return pids
        time.sleep(0.1)
    raise AssertionError(f"listeners {listener_pids(server)}, wanted {n} new ones")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalServer]:
    with server_env(request, "postgres") as env, LocalServer(
        data_dir=tmp_path_factory.mktemp("workers") / "data", env={**env, "EMABOARD_WORKERS": "2"}
    ) as server:
        wait_listeners(server, 2)
        yield server


def workers(server: LocalServer) -> list[int]:
    assert server.proc is not None
    return child_pids(server.proc.pid)


def spread_connections(server: LocalServer) -> dict[int, list[http.client.HTTPConnection]]:
    """Open connections until each of the two processes accepted ``PER_WORKER`` of them."""
    candidates = workers(server)
    by_worker: dict[int, list[http.client.HTTPConnection]] = {}
    for _ in range(2000):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", "/api/health")  # answered: accepted by a process
        connection.getresponse().read()
        assert connection.sock is not None
        pid = server_pid(server.port, connection.sock.getsockname()[1], candidates)
        if pid is None or len(by_worker.setdefault(pid, [])) >= PER_WORKER:
            connection.close()
        else:
            by_worker[pid].append(connection)
        if len(by_worker) == 2 and all(len(c) == PER_WORKER for c in by_worker.values()):
            return by_worker
    raise AssertionError(f"connections per process: {({p: len(c) for p, c in by_worker.items()})}")


def post_through(connections: list[http.client.HTTPConnection], run_id: int,
                 first_step: int) -> int:
    """Each connection posts one batch at once (threads); return the points posted."""
    errors: list[str] = []

    def post(n: int, connection: http.client.HTTPConnection) -> None:
        steps = range(first_step + n * POINTS_PER_POST, first_step + (n + 1) * POINTS_PER_POST)
        body = json.dumps({"points": [{"key": "k", "step": s, "value": s} for s in steps]})
        connection.request("POST", f"/api/runs/{run_id}/metrics", body=body,
                           headers={"content-type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200 or json.loads(answer)["inserted"] != POINTS_PER_POST:
            errors.append(f"{response.status} {answer!r}")
        connection.close()

    threads = [threading.Thread(target=post, args=(n, c)) for n, c in enumerate(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return len(connections) * POINTS_PER_POST


async def receive_steps(ws: Any, expected: set[int], timeout_s: float = 30) -> list[str]:
    """Read messages until every step of ``expected`` arrived; return the other types."""
    others: list[str] = []
    deadline = time.monotonic() + timeout_s
    while expected:
        try:
            text = await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())
        except TimeoutError:
            raise AssertionError(f"{len(expected)} points never arrived, e.g. "
                                 f"{sorted(expected)[:5]}") from None
        message = json.loads(text)
        if message["type"] == "points":
            expected -= {p["step"] for p in message["points"]}
        else:
            others.append(message["type"])
    return others


def test_a_websocket_on_one_process_gets_every_point_posted_to_both(server: LocalServer) -> None:
    run_id = httpx.post(f"{server.url}/api/runs", json={"project": "w", "name": "fan"}).json()["id"]

    async def scenario() -> None:
        async with websockets.connect(f"{server.ws_url}/ws/runs/{run_id}") as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            port = ws.transport.get_extra_info("sockname")[1]
            own = server_pid(server.port, port, workers(server))
            by_worker = spread_connections(server)
            assert own in by_worker and len(by_worker) == 2
            connections = [c for conns in by_worker.values() for c in conns]
            n = await asyncio.to_thread(post_through, connections, run_id, 0)
            others = await receive_steps(ws, set(range(n)))
            assert "resync" not in others, others

            # The listening connections die: each process reconnects and resyncs its pages.
            before = listener_pids(server)
            with psycopg.connect(conninfo(server), autocommit=True) as connection:
                connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE application_name = %s", (APPLICATION_NAME,))
            while json.loads(await asyncio.wait_for(ws.recv(), timeout=30))["type"] != "resync":
                pass
            await asyncio.to_thread(wait_listeners, server, 2, before)
            connections = [c for conns in spread_connections(server).values() for c in conns]
            m = await asyncio.to_thread(post_through, connections, run_id, n)
            await receive_steps(ws, set(range(n, n + m)))

    asyncio.run(scenario())
    series = httpx.get(f"{server.url}/api/runs/{run_id}/metrics",
                       params={"keys": "k", "max_points": 100_000}).json()["series"]["k"]
    assert series["steps"] == list(range(4 * PER_WORKER * POINTS_PER_POST))
    assert "lost the LISTEN connection" in server.output()
    assert "Traceback" not in server.output()


def test_run_list_and_run_changes_reach_the_other_process(server: LocalServer) -> None:
    # A run created, renamed in status, and deleted through connections of one process is
    # seen by /ws/runs and /ws/runs/{id} sockets whichever process serves them.
    async def scenario() -> list[dict[str, Any]]:
        sockets = [await websockets.connect(f"{server.ws_url}/ws/runs?project=lw")
                   for _ in range(6)]
        for ws in sockets:
            await ws.recv()  # the run list
        by_worker = spread_connections(server)
        for pid, connections in by_worker.items():
            connection = connections[0]
            connection.request("POST", "/api/runs", body=json.dumps(
                {"project": "lw", "name": f"from-{pid}"}),
                headers={"content-type": "application/json"})
            assert connection.getresponse().read()
        received = []
        for ws in sockets:
            names = set()
            while len(names) < 2:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                if message["type"] == "run":
                    names.add(message["run"]["name"])
            received.append(sorted(names))
            await ws.close()
        for connections in by_worker.values():
            for connection in connections:
                connection.close()
        return received

    received = asyncio.run(scenario())
    assert all(len(names) == 2 for names in received), received


def test_one_process_alone_stores_nothing_in_live_event(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with server_env(request, "postgres") as env, LocalServer(
        data_dir=tmp_path / "d", env=env
    ) as single:
        run_id = httpx.post(f"{single.url}/api/runs", json={"project": "s", "name": "r"}).json()
        httpx.post(f"{single.url}/api/runs/{run_id['id']}/metrics",
                   json={"points": [{"key": "a", "step": 1, "value": 1}]}).raise_for_status()
        assert listener_pids(single) == []
        url = env["EMABOARD_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT COUNT(*) FROM live_event").fetchone() == (0,)

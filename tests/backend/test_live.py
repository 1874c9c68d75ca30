"""A real server (uvicorn subprocess) with real clients: push, stalled clients, crashes."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from emaboard_server.app.api.close_codes import WS_4401_INVALID_TOKEN
from emaboard_server.local_server import LocalServer
from tests.backend.conftest import points
from tests.utils.databases import both_databases, server_env

pytestmark = pytest.mark.e2e
WS_QUEUE_SIZE = 8


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One real server for the tests that do not restart it (small websocket queues)."""
    with LocalServer(
        data_dir=tmp_path_factory.mktemp("live") / "d",
        env={"EMABOARD_WS_QUEUE_SIZE": str(WS_QUEUE_SIZE)},
    ) as server:
        yield server


def new_run(server: LocalServer, name: str = "r") -> int:
    response = httpx.post(
        f"{server.url}/api/runs", json={"project": "live", "name": name}, headers=server.headers
    )
    response.raise_for_status()
    return int(response.json()["id"])


def all_steps(server: LocalServer, run_id: int, key: str) -> list[int]:
    response = httpx.get(
        f"{server.url}/api/runs/{run_id}/metrics",
        headers=server.headers,
        params={"keys": key, "max_points": 1_000_000},
        timeout=30,
    )
    return list(response.json()["series"][key]["steps"])


def test_point_posted_over_http_reaches_a_websocket(server: LocalServer) -> None:
    run_id = new_run(server, "push")

    async def scenario() -> dict[str, Any]:
        async with websockets.connect(f"{server.ws_url}/ws/runs/{run_id}") as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            async with httpx.AsyncClient(base_url=server.url) as client:
                body = {"points": [{"key": "train/loss", "step": 7, "value": "-Infinity"}]}
                (await client.post(f"/api/runs/{run_id}/metrics", json=body)).raise_for_status()
            return json.loads(await asyncio.wait_for(ws.recv(), timeout=10))

    message = asyncio.run(scenario())
    assert message["type"] == "points"
    assert [(p["key"], p["step"], p["value"]) for p in message["points"]] == [
        ("train/loss", 7, "-Infinity")
    ]


def test_stalled_websocket_does_not_block_ingest_or_other_clients(server: LocalServer) -> None:
    run_id = new_run(server, "stall")
    n_batches, per_batch = 60, 1000

    async def scenario() -> tuple[list[int], str]:
        # The stalled client stops reading: its TCP window and buffers fill up.
        stalled = await websockets.connect(
            f"{server.ws_url}/ws/runs/{run_id}", max_queue=1, max_size=None
        )
        healthy = await websockets.connect(f"{server.ws_url}/ws/runs/{run_id}", max_size=None)
        await stalled.recv()
        await healthy.recv()
        received: list[int] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            for b in range(n_batches):
                body = {"points": points("k" * 200, range(b * per_batch, (b + 1) * per_batch))}
                response = await client.post(f"/api/runs/{run_id}/metrics", json=body)
                assert response.json()["inserted"] == per_batch
        while len(received) < n_batches * per_batch:
            message = json.loads(await asyncio.wait_for(healthy.recv(), timeout=20))
            if message["type"] == "resync":  # allowed: the healthy one may also fall behind
                break
            received += [p["step"] for p in message["points"]]
        await healthy.close()
        first_types = []
        try:  # drain the stalled client: somewhere in its stream sits a resync
            while "resync" not in first_types:
                first_types.append(
                    json.loads(await asyncio.wait_for(stalled.recv(), timeout=10))["type"]
                )
        finally:
            await stalled.close()
        return received, first_types[-1]

    received, last_type = asyncio.run(scenario())
    assert last_type == "resync"
    assert received == list(range(len(received)))  # in order, nothing twice
    assert len(all_steps(server, run_id, "k" * 200)) == n_batches * per_batch


@pytest.mark.slow
def test_serve_stops_cleanly_on_ctrl_c_and_points_survive_a_restart(tmp_path: Path) -> None:
    with LocalServer(data_dir=tmp_path / "d") as server:
        run_id = new_run(server)
        httpx.post(
            f"{server.url}/api/runs/{run_id}/metrics", json={"points": points("a", range(100))}
        ).raise_for_status()
        server.stop()  # SIGINT, like Ctrl-C
        assert server.proc is not None and server.proc.returncode == 0
        assert f"emaboard serving http://127.0.0.1:{server.port}/" in server.output()
        assert "Traceback" not in server.output()
        server.start()
        assert all_steps(server, run_id, "a") == list(range(100))
        assert new_run(server) == run_id  # resumed, not recreated


@pytest.mark.slow
@both_databases
def test_every_acknowledged_point_survives_kill_9_during_a_burst(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    with server_env(request, database) as env, LocalServer(
        data_dir=tmp_path / "d", env=env
    ) as server:
        run_id = new_run(server)
        acknowledged: list[int] = []  # batch numbers the server answered 200 to
        started = threading.Event()

        def burst() -> None:
            with httpx.Client(base_url=server.url, timeout=5) as client:
                for b in range(10_000):
                    body = {"points": points("a", range(b * 500, (b + 1) * 500))}
                    try:
                        response = client.post(f"/api/runs/{run_id}/metrics", json=body)
                    except httpx.HTTPError:
                        return
                    if response.status_code == 200:
                        acknowledged.append(b)
                    if b == 5:
                        started.set()

        sender = threading.Thread(target=burst)
        sender.start()
        assert started.wait(30)
        server.kill()
        sender.join(30)
        server.start()
        steps = all_steps(server, run_id, "a")
        assert len(steps) == len(set(steps))  # none twice
        stored = set(steps)
        for b in acknowledged:
            assert set(range(b * 500, (b + 1) * 500)) <= stored
        assert len(acknowledged) >= 5
        # A retry of everything after the restart stores only what was lost.
        batches = len(acknowledged) + 1
        retried = sum(
            httpx.post(
                f"{server.url}/api/runs/{run_id}/metrics",
                json={"points": points("a", range(b * 500, (b + 1) * 500))},
            ).json()["inserted"]
            for b in range(batches)
        )
        assert retried == batches * 500 - len(stored & set(range(batches * 500)))
        assert all_steps(server, run_id, "a")[: batches * 500] == list(range(batches * 500))


def raw_get(server: LocalServer, target: str) -> tuple[int, bytes]:
    """Send a request line byte for byte (no client-side path normalization)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


TRAVERSALS = [
    "/../../../../etc/passwd",
    "/api/runs/../../../etc/passwd",
    "/api/runs/1/snapshots/../../../emaboard.db",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/api/runs/1/snapshots/1/file/../../../../emaboard.db",
    "//etc/passwd",
    "/api/runs/%2fetc%2fpasswd/keys",
    "/vendor/../../../../etc/passwd",
    "/vendor/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
]


def test_raw_traversal_requests_get_no_file(server: LocalServer) -> None:
    new_run(server, "traversal")
    for target in TRAVERSALS:
        status, body = raw_get(server, target)
        assert status in {400, 404, 422}, target
        assert b"root:" not in body and b"SQLite format" not in body, target


def test_token_on_a_real_server(tmp_path: Path) -> None:
    with LocalServer(data_dir=tmp_path / "d", token="tok") as server:
        assert httpx.get(f"{server.url}/api/runs").status_code == 401
        run_id = new_run(server)

        async def scenario() -> tuple[int, str]:
            async with websockets.connect(f"{server.ws_url}/ws/runs/{run_id}?token=nope") as ws:
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await ws.recv()
            assert info.value.rcvd is not None
            async with websockets.connect(f"{server.ws_url}/ws/runs/{run_id}?token=tok") as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
            return info.value.rcvd.code, info.value.rcvd.reason

        assert asyncio.run(scenario()) == (WS_4401_INVALID_TOKEN, "Invalid or missing token")


@both_databases
def test_concurrent_writers_store_each_point_once_and_count_every_conflict(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    # Eight writers post the same 30 batches (same (key, step) pairs, each writer its own
    # values) in different orders, at once. Each batch is stored whole by exactly one writer;
    # every other copy is answered as conflicts, none stored twice.
    writers, batches, per_batch = 8, 30, 40
    with server_env(request, database) as env, LocalServer(
        data_dir=tmp_path / "d", env=env
    ) as server:
        run_id = new_run(server, "writers")
        answers: list[dict[str, int]] = []

        def write(writer: int) -> None:
            order = list(range(batches))
            random.Random(writer).shuffle(order)
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for b in order:
                    body = {"points": [{"key": f"k{i % 2}", "step": b * per_batch + i,
                                        "value": writer + b / 1000} for i in range(per_batch)]}
                    response = client.post(f"/api/runs/{run_id}/metrics", json=body)
                    response.raise_for_status()
                    answers.append(response.json())

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        series = httpx.get(f"{server.url}/api/runs/{run_id}/metrics",
                           params={"max_points": 1_000_000}).json()["series"]
    total = batches * per_batch
    assert len(answers) == writers * batches
    assert sum(a["inserted"] for a in answers) == total
    assert sum(a["conflicts"] for a in answers) == (writers - 1) * total
    steps = sorted(series["k0"]["steps"] + series["k1"]["steps"])
    assert steps == list(range(total))
    by_step = dict(zip(series["k0"]["steps"] + series["k1"]["steps"],
                       series["k0"]["values"] + series["k1"]["values"], strict=True))
    for b in range(batches):  # one writer's copy of each batch, whole
        values = {by_step[s] for s in range(b * per_batch, (b + 1) * per_batch)}
        assert len(values) == 1 and round(values.pop() % 1 * 1000) == b

"""Snapshot uploads are idempotent (issue 14, item 2), against a real server.

Before: a client retry after a stalled answer stored the snapshot again (3 of 3 trials gave
2 rows and 2 files; with ``request_timeout_s=0.05`` one 268 MB snapshot became 101 rows and
27.2 GB). Now (run, averager, step) identifies a snapshot: the same file again answers the
stored one (200), another file is a 409 naming it, and the client asks before it sends.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from ema_core.transport import ApiClient, RejectedError, RetryableError
from emaboard_server.local_server import LocalServer
from tests.backend.conftest import assert_error
from tests.backend.utils import safetensors_bytes
from tests.utils.databases import DATABASES, server_env


@pytest.fixture(scope="module", params=DATABASES)
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalServer]:
    with server_env(request, request.param) as env, LocalServer(
        tmp_path_factory.mktemp("retries") / "data", env=env
    ) as proc:
        yield proc


@pytest.fixture
def http(server: LocalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.fixture
def run_id(http: httpx.Client, request: pytest.FixtureRequest) -> int:
    return int(http.post("/api/runs", json={"project": "r", "name": request.node.name})
               .json()["id"])


def upload(http: httpx.Client, run_id: int, content: bytes, step: int = 10) -> httpx.Response:
    return http.post(f"/api/runs/{run_id}/snapshots",
                     data={"averager": "ema_0.999", "step": str(step), "value": "0.5"},
                     files={"file": ("s.safetensors", content)})


def files_of(server: LocalServer, run_id: int) -> list[Path]:
    folder = server.data_dir / "snapshots" / str(run_id)
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_the_same_file_again_answers_the_stored_snapshot(
    http: httpx.Client, server: LocalServer, run_id: int
) -> None:
    content = safetensors_bytes()
    first = upload(http, run_id, content)
    assert first.status_code == 201
    again = upload(http, run_id, content)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(http.get(f"/api/runs/{run_id}/snapshots").json()) == 1
    assert len(files_of(server, run_id)) == 1


def test_another_file_at_the_same_step_is_409_naming_the_stored_one(
    http: httpx.Client, server: LocalServer, run_id: int
) -> None:
    stored = upload(http, run_id, safetensors_bytes()).json()
    response = upload(http, run_id, safetensors_bytes(scale=2.0))
    assert_error(response, 409, (
        f"Snapshot conflict: run {run_id} already has snapshot {stored['id']} for averager "
        f"'ema_0.999' at step 10 with another file (sha256 {stored['sha256'][:16]}…): delete "
        f"it first (DELETE /api/runs/{run_id}/snapshots/{stored['id']}) or upload under "
        "another step"))
    assert [s["id"] for s in http.get(f"/api/runs/{run_id}/snapshots").json()] == [stored["id"]]
    assert len(files_of(server, run_id)) == 1
    assert upload(http, run_id, safetensors_bytes(scale=2.0), step=11).status_code == 201
    assert http.delete(f"/api/runs/{run_id}/snapshots/{stored['id']}").status_code == 204
    assert upload(http, run_id, safetensors_bytes(scale=2.0)).status_code == 201


def test_concurrent_retries_store_one_snapshot(
    http: httpx.Client, server: LocalServer, run_id: int
) -> None:
    content = safetensors_bytes(scale=3.0)

    def post(_: int) -> tuple[int, int]:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = upload(client, run_id, content)
            return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert len({snapshot_id for _, snapshot_id in answers}) == 1
    assert len(files_of(server, run_id)) == 1
    assert not list((server.data_dir / "snapshots").glob("*/*.part"))


def test_list_filters_by_step(http: httpx.Client, run_id: int) -> None:
    for step in (1, 2, 3):
        upload(http, run_id, safetensors_bytes(scale=float(step)), step=step)
    got = http.get(f"/api/runs/{run_id}/snapshots", params={"averager": "ema_0.999", "step": 2})
    assert [s["step"] for s in got.json()] == [2]


def _write_snapshot(path: Path, megabytes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    save_file({"w": rng.standard_normal(megabytes * (1 << 18), dtype=np.float32)}, str(path))
    return path


def test_the_client_does_not_send_a_stored_file_again(
    server: LocalServer, run_id: int, tmp_path: Path
) -> None:
    path = _write_snapshot(tmp_path / "s.safetensors", 1)
    api = ApiClient(server.url)
    sent: list[tuple[str, int]] = []
    api._http.event_hooks["request"].append(
        lambda request: sent.append((request.method, len(request.read()))))
    kwargs: dict[str, Any] = {"averager": "swa", "step": 5, "metric": None, "value": None,
                              "metadata": {}}
    first = api.upload_snapshot(run_id, path, **kwargs)
    assert [method for method, _ in sent] == ["GET", "POST"]
    sent.clear()
    again = api.upload_snapshot(run_id, path, **kwargs)
    assert again == first
    assert sent == [("GET", 0)]  # asked, found the same sha256, sent nothing
    assert first["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    other = _write_snapshot(tmp_path / "o.safetensors", 1, seed=1)
    with pytest.raises(RejectedError, match=r"Snapshot conflict: run \d+ already has snapshot"):
        api.upload_snapshot(run_id, other, **kwargs)
    api.close()


def test_retries_after_timeouts_store_one_snapshot(
    http: httpx.Client, server: LocalServer, run_id: int, tmp_path: Path
) -> None:
    # The case: answers take longer than the client waits, so the client retries
    # (as the sender does on RetryableError) until one call succeeds. The client's timeout
    # starts at 2 ms (48 MB cannot even be sent in that time) and grows by 10 % a try, so the
    # first tries time out however fast the machine, and one gets through before the 300th.
    path = _write_snapshot(tmp_path / "big.safetensors", 48)
    tries = 0
    for tries in range(1, 301):  # noqa: B007
        api = ApiClient(server.url, timeout_s=0.002 * 1.1 ** tries)
        try:
            api.upload_snapshot(run_id, path, averager="ema_0.999", step=100, metric=None,
                                value=None, metadata={})
            break
        except RetryableError:
            continue
        finally:
            api.close()
    assert 1 < tries < 300, tries  # it did time out, and then it got through
    stored = http.get(f"/api/runs/{run_id}/snapshots").json()
    assert len(stored) == 1 and stored[0]["size_bytes"] == path.stat().st_size
    # Uploads the client gave up on may still be being processed (a ``.part`` file, or a
    # validated file about to meet the stored row): each one ends by removing its copy.
    deadline = time.monotonic() + 30
    while len(files_of(server, run_id)) != 1 or any(
            f.suffix == ".part" for f in files_of(server, run_id)):
        assert time.monotonic() < deadline, files_of(server, run_id)
        time.sleep(0.05)
    assert [f.suffix for f in files_of(server, run_id)] == [".safetensors"]

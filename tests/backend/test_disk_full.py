"""A full disk while the server runs: 507 naming what is full, nothing half-stored, the
server still answering, and the same request stored once space is back.

Real full disks, not simulated errors: the data directory (SQLite database and snapshot
files) on a 3 MiB tmpfs, and PostgreSQL's tables in a tablespace on a 2 MiB tmpfs (its
write-ahead log stays on the big disk, as PostgreSQL's own advice for tablespaces goes:
a full WAL disk stops the whole cluster). Mounting needs root; without it these tests skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from safetensors.numpy import save

from emaboard_server.local_server import LocalServer
from tests.utils.mounts import tmpfs

pytestmark = pytest.mark.e2e
FULL = "Insufficient storage: the disk holding {place} is full, so nothing of this request was "


MIB_SNAPSHOT = save({"w": np.zeros(1 << 18, dtype=np.float32)})  # 1 MiB of weights


def batch(first: int, n: int = 2000) -> dict[str, Any]:
    return {"points": [{"key": f"layer/{i % 50}/rel_drift/ema_0.999", "step": first + i,
                        "value": i / 7} for i in range(n)]}


def post_until_full(client: httpx.Client, run_id: int) -> tuple[int, httpx.Response]:
    """Post 2,000-point batches until one is refused; return the next free step and it."""
    step = 0
    for _ in range(500):
        response = client.post(f"/api/runs/{run_id}/metrics", json=batch(step))
        if response.status_code != 200:
            return step, response
        step += 2000
    raise AssertionError("the disk never filled up")


def assert_full(response: httpx.Response, place: str) -> None:
    assert response.status_code == 507, response.text
    message = response.json()["error"]["message"]
    assert message.startswith(FULL.format(place=place)), message


def stored_steps(client: httpx.Client, run_id: int) -> int:
    series = client.get(f"/api/runs/{run_id}/metrics", params={"max_points": 1_000_000}).json()
    return sum(len(s["steps"]) for s in series["series"].values())


def test_sqlite_and_snapshot_files_on_a_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "3m") as disk, LocalServer(
        data_dir=disk / "data", log_path=tmp_path / "server.log"
    ) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/api/runs", json={"project": "p", "name": "r"}).json()["id"]
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (2 << 20))  # leaves under 1 MiB
        step, refused = post_until_full(client, run_id)
        assert_full(refused, f"the database {disk / 'data' / 'emaboard.db'}")
        assert client.get("/api/health").status_code == 200  # still answering
        assert stored_steps(client, run_id) == step  # every acknowledged point, nothing more

        upload = client.post(f"/api/runs/{run_id}/snapshots",
                             data={"averager": "swa", "step": "1"},
                             files={"file": ("s", MIB_SNAPSHOT)})
        assert_full(upload, f"the data directory {disk / 'data'}")
        assert not [f for f in (disk / "data").rglob("*.*") if f.suffix != ".db" and f.is_file()
                    and "emaboard.db" not in f.name]  # no snapshot or partial file left

        filler.unlink()  # space is back: the refused requests go through, once
        again = client.post(f"/api/runs/{run_id}/metrics", json=batch(step))
        assert again.json()["inserted"] == 2000, again.text
        assert stored_steps(client, run_id) == step + 2000
        upload = client.post(f"/api/runs/{run_id}/snapshots",
                             data={"averager": "swa", "step": "1"},
                             files={"file": ("s", MIB_SNAPSHOT)})
        assert upload.status_code == 201, upload.text
    assert "Traceback" not in (tmp_path / "server.log").read_text()


@pytest.fixture
def tiny_tablespace_url(postgres_cluster: Any) -> Iterator[str]:
    """A database whose tables go to a tablespace on a 2 MiB tmpfs."""
    # Not under tmp_path: PostgreSQL's user cannot enter root's pytest folders.
    root = Path(tempfile.mkdtemp(prefix="emaboard-tblspc-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(root.rmdir)  # after the unmount: left empty in /tmp otherwise
        cleanup.enter_context(tmpfs(root, "2m"))
        folder = root / "pg"
        folder.mkdir()
        shutil.chown(folder, "postgres")
        name = f"diskfull_{os.getpid()}"
        postgres_cluster.execute(f"CREATE TABLESPACE {name} LOCATION '{folder}'")
        postgres_cluster.execute(f"CREATE DATABASE {name}")
        postgres_cluster.execute(f"ALTER DATABASE {name} SET default_tablespace = {name}")
        try:
            yield postgres_cluster.url(name)
        finally:
            postgres_cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            postgres_cluster.execute(f"DROP TABLESPACE IF EXISTS {name}")


def test_postgresql_tablespace_full(tiny_tablespace_url: str, tmp_path: Path) -> None:
    with LocalServer(data_dir=tmp_path / "data",
                     env={"EMABOARD_DATABASE_URL": tiny_tablespace_url}) as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        run_id = client.post("/api/runs", json={"project": "p", "name": "r"}).json()["id"]
        conninfo = tiny_tablespace_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, autocommit=True) as connection:  # ~0.8 MiB to free later
            connection.execute("CREATE TABLE filler AS "
                               "SELECT g, random() AS r FROM generate_series(1, 20000) AS g")
        step, refused = post_until_full(client, run_id)
        assert_full(refused, f"the PostgreSQL database {tiny_tablespace_url}")
        assert client.get("/api/health").status_code == 200
        assert stored_steps(client, run_id) == step
        with psycopg.connect(conninfo, autocommit=True) as connection:  # space is back
            connection.execute("DROP TABLE filler")
        again = client.post(f"/api/runs/{run_id}/metrics", json=batch(step))
        assert again.json()["inserted"] == 2000, again.text
    assert "Traceback" not in server.output()

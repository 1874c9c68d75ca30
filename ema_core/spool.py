"""The local spool: an SQLite file that keeps what a run could not send yet.

One spool per run, at ``<run dir>/spool.sqlite``: the run's identity (project, name,
config, final status), the points not yet accepted by the server, in production order
(``seq``), and the snapshot files not yet uploaded. The background sender
(:mod:`ema_core.sender`) writes and drains it; :func:`sync_spool` (``emaboard sync DIR``)
uploads whatever is left after the training process ended. Every upload is idempotent
on the server ((run, key, step) is unique), so a spool can be synced any number of times.

Only the stdlib ``sqlite3`` is used; one connection, guarded by a lock, serves all threads.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ema_core._run_negotiation import create_or_resume_run
from ema_core._spool_sync import sync_points, sync_snapshots
from ema_core.transport import ApiClient

__all__ = [
    "PendingSnapshot",
    "SPOOL_FILENAME",
    "Spool",
    "SpooledPoint",
    "SyncResult",
    "find_spools",
    "spool_summary",
    "sync_spool",
]

logger = logging.getLogger(__name__)

SPOOL_FILENAME = "spool.sqlite"

SpooledPoint = tuple[int, str, int, float, float]  # (seq, key, step, value, wall_time)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    seq INTEGER PRIMARY KEY, key TEXT NOT NULL, step INTEGER NOT NULL,
    value REAL, wall_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, averager TEXT NOT NULL,
    step INTEGER NOT NULL, metric TEXT, value REAL, metadata TEXT NOT NULL);
"""


@dataclass(frozen=True)
class PendingSnapshot:
    """A snapshot file waiting for upload (a row of the spool's ``snapshots`` table)."""

    id: int
    path: Path
    averager: str
    step: int
    metric: str | None
    value: float | None
    metadata: dict[str, str]


class Spool:
    """A run's spool file (created with its parent directories when missing).

    Args:
        path: the SQLite file, conventionally ``<run dir>/spool.sqlite``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection; the file stays."""
        with self._lock:
            self._db.close()

    def set_meta(self, **values: str) -> None:
        """Store run identity fields (``project``, ``name``, ``config`` as JSON, ``status``, …)."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", list(values.items())
            )

    def meta(self) -> dict[str, str]:
        """All stored run identity fields."""
        with self._lock:
            return dict(self._db.execute("SELECT k, v FROM meta").fetchall())

    def add_points(self, points: Iterable[SpooledPoint]) -> int:
        """Append points (seq, key, step, value, wall_time); returns how many were given.

        A point whose ``seq`` is already stored replaces the stored one (same point).
        NaN is stored as NULL (SQLite has no NaN) and read back as NaN.
        """
        rows = [(q, k, s, None if math.isnan(v) else v, t) for q, k, s, v, t in points]
        if rows:
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?)", rows)
        return len(rows)

    def head_points(self, limit: int) -> list[SpooledPoint]:
        """The ``limit`` oldest points (lowest ``seq``), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, key, step, value, wall_time FROM points ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [(q, k, s, math.nan if v is None else v, t) for q, k, s, v, t in rows]

    def delete_points_through(self, seq: int) -> None:
        """Delete every point with ``seq`` at most ``seq`` (after the server accepted them)."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM points WHERE seq <= ?", (seq,))

    def count_points(self) -> int:
        """How many points are spooled."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0])

    def max_seq(self) -> int:
        """The largest stored ``seq``, or -1 when no point is spooled."""
        with self._lock:
            found = self._db.execute("SELECT MAX(seq) FROM points").fetchone()[0]
        return -1 if found is None else int(found)

    def add_snapshot(
        self, path: Path, *, averager: str, step: int, metric: str | None,
        value: float | None, metadata: dict[str, str],
    ) -> None:
        """Record a snapshot file that still has to be uploaded."""
        row = (str(path), averager, step, metric, value, json.dumps(metadata))
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO snapshots (path, averager, step, metric, value, metadata) "
                "VALUES (?, ?, ?, ?, ?, ?)", row,
            )

    def pending_snapshots(self) -> list[PendingSnapshot]:
        """Snapshots not uploaded yet, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, path, averager, step, metric, value, metadata FROM snapshots "
                "ORDER BY id"
            ).fetchall()
        return [
            PendingSnapshot(i, Path(p), a, s, m, v, json.loads(md)) for i, p, a, s, m, v, md in rows
        ]

    def delete_snapshot(self, snapshot_id: int) -> None:
        """Forget an uploaded (or unrecoverable) snapshot row; the file stays."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))


@dataclass
class SyncResult:
    """What :func:`sync_spool` did for one spool file."""

    spool: Path
    run_id: int | None = None
    points_sent: int = 0
    points_inserted: int = 0
    points_conflicting: int = 0
    snapshots_sent: int = 0
    snapshots_missing: int = 0
    status: str | None = None


def find_spools(directory: str | Path) -> list[Path]:
    """Spool files under ``directory`` (itself a run dir, or any parent of run dirs).

    Raises:
        FileNotFoundError: ``directory`` does not exist or holds no spool file.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"Spool directory {str(root)!r} not found: pass a run directory")
    found = sorted(root.rglob(SPOOL_FILENAME))
    if not found:
        raise FileNotFoundError(
            f"No {SPOOL_FILENAME} under {str(root)!r}: pass the run directory a Monitor wrote"
        )
    return found


def sync_spool(
    directory: str | Path, server: str, *, token: str | None = None,
    max_batch_points: int = 5000, timeout_s: float = 30.0,
) -> list[SyncResult]:
    """Upload every spool under ``directory`` to ``server``: points, snapshots, final status.

    The run's recorded summary entries (``primary_metric``) are set first; points go in
    ``seq`` order; each batch is deleted from the spool once the server
    accepted it, so an interrupted sync resumes where it stopped. A spool with nothing
    pending and its status already delivered is left alone.

    Args:
        directory: a run directory or any directory above run directories.
        server: base URL of the emaboard server.
        token: bearer token, when the server needs one.
        max_batch_points: points per request (halved on 413).
        timeout_s: timeout of one request, in seconds.

    Returns:
        One :class:`SyncResult` per spool file.

    Raises:
        FileNotFoundError: no spool under ``directory``.
        ValueError: a spool has no run identity (not written by a Monitor).
        ema_core.transport.TransportError: the server failed; what was sent stays sent.
    """
    api = ApiClient(server, token=token, timeout_s=timeout_s)
    try:
        return [_sync_one(api, path, max_batch_points) for path in find_spools(directory)]
    finally:
        api.close()


def _sync_one(api: ApiClient, path: Path, max_batch_points: int) -> SyncResult:
    spool = Spool(path)
    try:
        meta = spool.meta()
        if "project" not in meta or "name" not in meta:
            raise ValueError(f"Spool {str(path)!r} has no run identity: it was not written by a "
                             "Monitor")
        result = SyncResult(spool=path)
        pending = spool.count_points() or spool.pending_snapshots()
        if not pending and meta.get("status_sent", "1") == "1":
            return result
        run = (meta["project"], meta["name"], json.loads(meta["config"]))
        run_id, name, renamed = create_or_resume_run(api, spool, run, meta.get("server_name"))
        if renamed:
            logger.warning("Run %s/%s exists: %s goes to %s/%s", meta["project"], meta["name"],
                           spool.path, meta["project"], name)
        result.run_id = run_id
        if "summary" in meta:
            api.update_summary(run_id, json.loads(meta["summary"]))
        sync_points(api, spool, run_id, result, max_batch_points)
        sync_snapshots(api, spool, run_id, result)
        if "status" in meta:
            api.set_status(run_id, meta["status"])
            spool.set_meta(status_sent="1")
            result.status = meta["status"]
        return result
    finally:
        spool.close()


def spool_summary(path: Path) -> dict[str, Any]:
    """Counts of what a spool holds: ``{"points": n, "snapshots": m, **meta}`` (for tests/CLI)."""
    spool = Spool(path)
    try:
        return {"points": spool.count_points(), "snapshots": len(spool.pending_snapshots()),
                **spool.meta()}
    finally:
        spool.close()

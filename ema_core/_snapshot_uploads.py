"""The sender's snapshot uploads, from file to server (private).

:class:`SnapshotUploads` owns a snapshot's way out of the training process: the collector
thread writes each best-averager snapshot the training thread handed over
(:class:`~ema_core._sender_config.SnapshotJob`, CPU tensors) to
``<run dir>/snapshots/<averager>-step<step>.safetensors``; each file, and each post-hoc
EMA file written elsewhere, is recorded in the spool at once, so a crash loses none
(``emaboard sync`` uploads the rest); the poster thread uploads them one at a time, oldest
first, and deletes the spool row once the server kept the file or rejected it for good.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path

from ema_core._rate_limited_log import RateLimitedLogger
from ema_core._sender_config import SenderStats, SnapshotJob
from ema_core.snapshot import write_snapshot
from ema_core.spool import Spool
from ema_core.transport import ApiClient, PayloadTooLarge, RejectedError


class SnapshotUploads:
    """Snapshot files waiting for the server, counted so that an idle poster reads no spool.

    Args:
        spool: the run's spool (its pending snapshots are this queue's rows).
        snapshot_dir: where :meth:`write_jobs` writes files (created when needed).
        stats: the sender's counters (``snapshots_uploaded``).
        log: the sender's rate-limited log.
    """

    def __init__(
        self, spool: Spool, snapshot_dir: Path, stats: SenderStats, log: RateLimitedLogger
    ) -> None:
        self.spool = spool
        self.jobs: deque[SnapshotJob] = deque()  # training thread: append; collector: write
        self._snapshot_dir = snapshot_dir
        self._stats = stats
        self._log = log
        self._lock = threading.Lock()  # guards the count and the abandoned flag
        self._pending = len(spool.pending_snapshots())
        self._abandoned = False

    @property
    def pending(self) -> int:
        """Snapshot files recorded in the spool and not uploaded yet."""
        return self._pending

    def add_file(self, path: Path, *, averager: str, step: int, metadata: dict[str, str]) -> None:
        """Record the upload of a file written elsewhere (thread-safe; the file is not copied)."""
        self.spool.add_snapshot(path, averager=averager, step=step, metric=None, value=None,
                                metadata=metadata)
        with self._lock:
            self._pending += 1

    def write_jobs(self) -> None:
        """Write every queued job's file and record it in the spool (collector thread)."""
        while self.jobs:
            job = self.jobs.popleft()
            self._snapshot_dir.mkdir(parents=True, exist_ok=True)
            path = self._snapshot_dir / f"{job.averager}-step{job.step}.safetensors"
            write_snapshot(job.tensors, job.metadata, path)
            self.spool.add_snapshot(path, averager=job.averager, step=job.step,
                                    metric=job.metric, value=job.value, metadata=job.metadata)
            with self._lock:
                self._pending += 1

    def upload_one(self, api: ApiClient, run_id: int) -> bool:
        """Upload the oldest pending file (poster thread); False when none is pending.

        A file the server rejects (or one that was deleted) is logged and dropped.

        Raises:
            RunGone: the run was deleted on the server (the file stays pending).
            RetryableError: the server is unreachable (the file stays pending).
        """
        if not self._pending:
            return False
        pending = self.spool.pending_snapshots()
        if not pending:
            with self._lock:
                self._pending = 0
            return False
        snap = pending[0]
        try:
            api.upload_snapshot(
                run_id, snap.path, averager=snap.averager, step=snap.step,
                metric=snap.metric, value=snap.value, metadata=snap.metadata,
            )
            self._stats.snapshots_uploaded += 1
        except (RejectedError, PayloadTooLarge, FileNotFoundError) as exc:
            self._log.log(logging.ERROR, "snapshot", "emaboard dropped snapshot %s: %s",
                          snap.path, exc)
        with self._lock:
            if not self._abandoned:
                self.spool.delete_snapshot(snap.id)
                self._pending -= 1
        return True

    def abandon(self) -> None:
        """Stop deleting spool rows: from now on the spool keeps every file for ``sync``."""
        with self._lock:
            self._abandoned = True

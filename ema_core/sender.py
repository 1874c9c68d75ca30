"""The background sender: moves points from the training thread to the server, or to the spool.

Two daemon threads, so that neither the network nor the disk ever runs on the training thread:

- the **collector** wakes every ``flush_interval_ms`` (or as soon as ``max_batch_points``
  are waiting), drains the producer's lock-free ``inbox`` deque, numbers the points
  (``seq``), expands weight statistics into points, writes snapshot files, and puts the
  points into a bounded in-memory ``buffer``, or into the spool when the buffer is full,
  the server is unreachable, or the spool already holds older points;
- the **poster** creates (or resumes, as the spool's ``resume`` says) the run
  (:mod:`ema_core._run_negotiation`), then posts batches: the buffer first (always older
  than anything spooled), then the spool in ``seq`` order, then pending snapshots
  (:mod:`ema_core._snapshot_uploads`). Failures back off exponentially with jitter (capped at
  ``max_backoff_s``, and during :meth:`Sender.close` at the time left); a failed batch and the
  buffer go to the spool, so they survive a crash of the training process.

The buffer, the batch in flight and the spool form one :class:`ema_core._outbox.Outbox`,
which keeps every point in memory older than every spooled point, so points reach the
server in production order, hence in step order per key. Retries are idempotent on the
server.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ema_core._intake import drain_inbox
from ema_core._outbox import Outbox
from ema_core._rate_limited_log import RateLimitedLogger
from ema_core._run_negotiation import create_or_resume_run
from ema_core._sender_config import SenderConfig, SenderStats, SnapshotJob
from ema_core._snapshot_uploads import SnapshotUploads
from ema_core._worker_threads import WorkerThreads
from ema_core.spool import Spool, SpooledPoint
from ema_core.transport import (
    ApiClient,
    PayloadTooLarge,
    RejectedError,
    RetryableError,
    RunGone,
)

__all__ = ["Sender"]

logger = logging.getLogger(__name__)


class Sender:
    """Owns the collector and poster threads of one run.

    Args:
        api: the HTTP client (used by the poster thread).
        spool: the run's spool.
        run: ``(project, name, config)`` for ``POST /api/runs``.
        snapshot_dir: where snapshot files are written.
        config: bounds and timings.
    """

    def __init__(
        self, api: ApiClient, spool: Spool, run: tuple[str, str, dict[str, Any]],
        snapshot_dir: Path, config: SenderConfig,
    ) -> None:
        self.api, self.spool, self.config = api, spool, config
        self._run = run
        self.inbox: deque[tuple[Any, ...]] = deque()  # producer: append only
        self._stats = SenderStats()
        self.run_id: int | None = None
        self._log = RateLimitedLogger(logger)
        self._lock = threading.Lock()  # guards the summary and abandoning
        self._outbox = Outbox(spool, config.max_queue_points)
        self._next_seq = spool.max_seq() + 1
        self._uploads = SnapshotUploads(spool, snapshot_dir, self._stats, self._log)
        self.snapshots: deque[SnapshotJob] = self._uploads.jobs  # producer: extend only
        self._summary: dict[str, Any] = {}  # run summary entries still to PATCH
        self._batch_points = config.max_batch_points
        self._wake_collector, self._wake_poster = threading.Event(), threading.Event()
        self._closing, self._collector_done = threading.Event(), threading.Event()
        self._abandoned = False
        self._stop = threading.Event()  # set when close() gives up: cuts a back-off short
        self._deadline = float("inf")
        self.run_name: str | None = spool.meta().get("server_name")
        self._workers = WorkerThreads([("emaboard-collector", self._collector_loop),
                                       ("emaboard-poster", self._poster_loop)])
        self._threads = self._workers.threads

    @property
    def stats(self) -> SenderStats:
        """Counters for tests and diagnostics (points posted, spooled, buffer high-water)."""
        self._stats.points_spooled = self._outbox.points_spooled
        self._stats.max_buffer_points = self._outbox.max_held
        return self._stats

    def start(self) -> None:
        """Start both threads."""
        self._workers.start()

    def after_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once both threads have ended: now when they have, else on the
        thread that ends last (a request still running after :meth:`close` must not find its
        HTTP client or spool closed under it)."""
        self._workers.after_stop(callback)

    def update_summary(self, **entries: Any) -> None:
        """Queue run summary entries (e.g. ``primary_metric``) for the poster to PATCH."""
        with self._lock:
            self._summary.update(entries)
        self._wake_poster.set()

    def add_snapshot_file(
        self, path: Path, *, averager: str, step: int, metadata: dict[str, str]
    ) -> None:
        """Queue the upload of a snapshot file written elsewhere (a post-hoc EMA snapshot).

        Thread-safe: the post-hoc writer thread calls it. The row goes to the spool at once,
        so the upload survives a crash (``emaboard sync``); the file itself is not copied.
        """
        self._uploads.add_file(path, averager=averager, step=step, metadata=metadata)
        self._wake_poster.set()

    def nudge(self) -> None:
        """Wake the collector now (the producer calls this when the inbox is large)."""
        self._wake_collector.set()

    def close(self, timeout_s: float) -> bool:
        """Flush within ``timeout_s`` seconds, then spool whatever is left.

        Returns:
            True when everything reached the server, False when some of it stayed in the spool.
        """
        self._deadline = time.monotonic() + timeout_s
        self._closing.set()
        self._wake_collector.set()
        self._threads[0].join(self.remaining_s())
        self._wake_poster.set()
        self._threads[1].join(self.remaining_s())
        with self._lock:
            self._abandoned = True
            self._stop.set()
            self._uploads.abandon()
        self._outbox.abandon()  # memory to the spool; so goes every later point
        if not self._threads[0].is_alive():
            self._outbox.put(self._drain_inbox())  # queued after the collector's last pass
            self._uploads.write_jobs()
        self.stats.closed_cleanly = not self._outbox.spooled and not self._uploads.pending
        return self.stats.closed_cleanly

    def alive(self) -> bool:
        """Whether a sender thread still runs (stuck in a request after :meth:`close`)."""
        return self._workers.alive()

    def remaining_s(self) -> float:
        """Seconds left before the close deadline (inf before :meth:`close`)."""
        return max(0.0, self._deadline - time.monotonic())

    # -- collector thread ------------------------------------------------------------------

    def _collector_loop(self) -> None:
        interval_s = self.config.flush_interval_ms / 1000
        while not self._closing.is_set():
            self._wake_collector.wait(interval_s)
            self._wake_collector.clear()
            self._collect_safely()
        self._collect_safely()
        self._collector_done.set()
        self._wake_poster.set()

    def _collect_safely(self) -> None:
        try:
            self._collect()
        except Exception as exc:  # never let the thread die; the training must go on
            self._log.log(logging.ERROR, "collect", "emaboard collector failed: %r", exc)

    def _collect(self) -> None:
        points = self._drain_inbox()
        self._uploads.write_jobs()
        self._outbox.put(points)
        if points or self._uploads.pending:
            self._wake_poster.set()

    def _drain_inbox(self) -> list[SpooledPoint]:
        points = drain_inbox(self.inbox, self._next_seq, self._log)
        self._next_seq += len(points)
        return points

    # -- poster thread ---------------------------------------------------------------------

    def _poster_loop(self) -> None:
        backoff_s = self.config.initial_backoff_s
        while not self._abandoned:
            try:
                if self._post_once():
                    backoff_s = self.config.initial_backoff_s
                    continue
            except RetryableError as exc:
                self._on_failure(exc, logging.WARNING)
            except Exception as exc:  # a bug must not kill the thread nor reach training
                self._on_failure(exc, logging.ERROR)
            else:  # nothing to send
                if self._closing.is_set() and self._collector_done.is_set():
                    return
                self._wake_poster.wait(self.config.flush_interval_ms / 1000)
                self._wake_poster.clear()
                continue
            delay_s = backoff_s * (0.5 + random.random() / 2)
            if self._closing.is_set():  # finish(): keep trying until its deadline
                if self.remaining_s() <= 0:
                    return  # close() spools the rest
                self._stop.wait(min(delay_s, self.remaining_s()))
            else:
                self._closing.wait(delay_s)
            backoff_s = min(2 * backoff_s, self.config.max_backoff_s)

    def _on_failure(self, exc: BaseException, level: int) -> None:
        self.stats.failures += 1
        self.stats.last_error = str(exc)
        what = "server unavailable" if level == logging.WARNING else "sender error"
        self._log.log(level, type(exc).__name__, "emaboard %s, spooling points: %s", what, exc)
        self._outbox.server_failed()

    def _post_once(self) -> bool:
        """Send one batch or snapshot; False when there was nothing to send."""
        if self.run_id is None:
            self.run_id = self._create_run()
        run_id = self.run_id
        self._outbox.server_answered()
        if self._summary:
            return self._send_summary(run_id)
        batch, from_spool = self._outbox.take(self._batch_points)
        if batch:
            self._post_batch(run_id, batch, from_spool)
            return True
        try:
            return self._uploads.upload_one(self.api, run_id)
        except RunGone:
            self.run_id = None
            return True

    def _create_run(self) -> int:
        """Create or resume the run (:mod:`ema_core._run_negotiation`); keep its name."""
        project, name, _ = self._run
        run_id, self.run_name, renamed = create_or_resume_run(self.api, self.spool, self._run,
                                                              self.run_name)
        if renamed:
            logger.warning(
                "emaboard: run %s/%s already exists; this training streams to %s/%s (pass "
                "resume='allow' to continue %s/%s instead)", project, name, project,
                self.run_name, project, name,
            )
        return run_id

    def _send_summary(self, run_id: int) -> bool:
        with self._lock:
            summary, self._summary = self._summary, {}
        try:
            self.api.update_summary(run_id, summary)
        except (RejectedError, PayloadTooLarge) as exc:
            self._log.log(logging.ERROR, "summary", "emaboard dropped summary %s: %s",
                          summary, exc)
        except (RetryableError, RunGone) as exc:
            with self._lock:
                self._summary = {**summary, **self._summary}
            if isinstance(exc, RetryableError):
                raise
            self.run_id = None
        return True

    def _post_batch(self, run_id: int, batch: list[SpooledPoint], from_spool: bool) -> None:
        try:
            answer = self.api.post_points(run_id, [(k, s, v, t) for _, k, s, v, t in batch])
        except (PayloadTooLarge, RunGone) as exc:
            self._batch_points = max(1, self._batch_points // 2)
            if isinstance(exc, RunGone):
                self.run_id, self._batch_points = None, self.config.max_batch_points
            self._outbox.retry(batch, from_spool)
            return
        except RejectedError as exc:
            self._log.log(logging.ERROR, "rejected", "emaboard dropped %d points: %s",
                          len(batch), exc)
        else:
            if answer.conflicts:
                self.stats.points_conflicting += answer.conflicts
                self._log.log(
                    logging.WARNING, "conflicts", "emaboard: the server already held other "
                    "values for %d of %d points (same key and step) and kept them: is another "
                    "training writing into run %s?", answer.conflicts, len(batch), self.run_name,
                )
        self._done(batch, from_spool)

    def _done(self, batch: list[SpooledPoint], from_spool: bool) -> None:
        self._outbox.sent(batch, from_spool)
        if not self._abandoned:
            self.stats.points_posted += len(batch)

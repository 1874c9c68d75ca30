"""SnapshotWriter: writes snapshot files on one background thread (private)."""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

logger = logging.getLogger(__name__)


class SnapshotWriter:
    """Runs write jobs in order on one background thread, at most ``max_pending`` queued.

    The training thread hands over tensors it has already copied; a job's file I/O happens
    here. When ``max_pending`` jobs are still queued, :meth:`submit` waits for the oldest
    (bounded memory: each job holds a CPU copy of the shadows). A failed job is logged and
    re-raised by the next :meth:`flush`.
    """

    def __init__(self, max_pending: int = 2) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"Invalid max_pending_writes {max_pending!r}: expected an int >= 1")
        self.max_pending = max_pending
        self._pending: collections.deque[Future[None]] = collections.deque()
        self._errors: list[BaseException] = []
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; waits for the oldest pending job first if the queue is full."""
        while len(self._pending) >= self.max_pending:
            self._settle(self._pending.popleft())
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="emaboard-snapshots")
            self._pending.append(self._executor.submit(job))

    def _settle(self, future: Future[None]) -> None:
        error = future.exception()
        if error is not None:
            logger.error("Writing a post-hoc EMA snapshot failed: %s", error)
            self._errors.append(error)

    def flush(self) -> None:
        """Wait for every queued job.

        Raises:
            Exception: the first error of a job that failed since the last flush.
        """
        while self._pending:
            self._settle(self._pending.popleft())
        if self._errors:
            first, self._errors = self._errors[0], []
            raise first

    def close(self) -> None:
        """Flush, then stop the thread (a later :meth:`submit` starts a new one).

        Raises:
            Exception: as :meth:`flush`.
        """
        try:
            self.flush()
        finally:
            with self._lock:
                if self._executor is not None:
                    self._executor.shutdown(wait=True)
                    self._executor = None

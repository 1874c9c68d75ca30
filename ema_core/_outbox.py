"""The points on their way to the server: a bounded buffer in memory, the batch in flight, and
the spool on disk behind them, kept in production order.

Invariant (what makes the client send each key's points in step order): every point held in
memory (the batch in flight, then the buffer) is older, by ``seq``, than every spooled point.
It holds because memory takes new points only while the spool is empty, a failed batch goes
back in front of the buffer, and memory is emptied into the spool (whose reads are ordered
by ``seq``) when the server fails or the sender closes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from ema_core.spool import Spool, SpooledPoint


class Outbox:
    """Where the collector puts points and the poster takes batches (thread-safe).

    Args:
        spool: the run's spool; points that memory cannot take go there.
        max_points: the most points held in memory (buffer and batch in flight together).

    Attributes:
        spooled: points in the spool now.
        points_spooled: points ever written to the spool (a counter).
        max_held: the most points ever held in memory at once.
    """

    def __init__(self, spool: Spool, max_points: int) -> None:
        self._spool = spool
        self.max_points = max_points
        self._lock = threading.Lock()
        self._buffer: deque[SpooledPoint] = deque()
        self._inflight: list[SpooledPoint] = []
        self._server_down = False
        self._abandoned = False
        self.spooled = spool.count_points()
        self.points_spooled = 0
        self.max_held = 0

    @property
    def held(self) -> int:
        """Points in memory: the buffer and the batch in flight."""
        return len(self._buffer) + len(self._inflight)

    def in_memory(self) -> list[SpooledPoint]:
        """The points held in memory, oldest first: the batch in flight, then the buffer."""
        with self._lock:
            return self._inflight + list(self._buffer)

    def put(self, points: Sequence[SpooledPoint]) -> None:
        """Queue new points (ascending ``seq``, newer than all before): into memory while it
        has room, the spool is empty and the server answers; the rest into the spool."""
        with self._lock:
            room = 0 if (self.spooled or self._server_down or self._abandoned) else max(
                0, self.max_points - self.held)
            self._buffer.extend(points[:room])
            self.max_held = max(self.max_held, self.held)
            self._to_spool(points[room:])

    def take(self, max_points: int) -> tuple[list[SpooledPoint], bool]:
        """The next batch to post, oldest points first: from memory (then held as in flight
        until :meth:`sent` or :meth:`retry`), else from the head of the spool.

        Returns:
            The batch (empty when nothing waits) and whether it was read from the spool.
        """
        with self._lock:
            batch = [self._buffer.popleft() for _ in range(min(max_points, len(self._buffer)))]
            self._inflight = batch
            if batch or not self.spooled:
                return batch, False
        return self._spool.head_points(max_points), True

    def sent(self, batch: Sequence[SpooledPoint], from_spool: bool) -> None:
        """``batch`` (from :meth:`take`) reached the server, or was refused for good: forget it.

        Does nothing after :meth:`abandon` (the spool then keeps what it has).
        """
        with self._lock:
            if self._abandoned:
                return
            if from_spool:
                self._spool.delete_points_through(batch[-1][0])
                self.spooled = self._spool.count_points()
            else:
                self._inflight = []

    def retry(self, batch: Sequence[SpooledPoint], from_spool: bool) -> None:
        """Send ``batch`` (from :meth:`take`) again: back in front of the buffer (a spooled
        batch simply stays in the spool)."""
        with self._lock:
            if not from_spool and not self._abandoned:
                self._buffer.extendleft(reversed(batch))
                self._inflight = []

    def server_answered(self) -> None:
        """The server answers again: memory takes new points again (when the spool is empty)."""
        with self._lock:
            self._server_down = False

    def server_failed(self) -> None:
        """The server is unreachable: memory goes to the spool, and new points go there too
        until :meth:`server_answered`."""
        with self._lock:
            if self._abandoned:
                return
            self._server_down = True
            self._spill()

    def abandon(self) -> None:
        """The sender closes: memory goes to the spool, and so does every later :meth:`put`;
        :meth:`sent` and :meth:`retry` of a batch still in flight change nothing."""
        with self._lock:
            self._abandoned = True
            self._spill()

    def _spill(self) -> None:
        points = self._inflight + list(self._buffer)
        self._inflight, self._buffer = [], deque()
        self._to_spool(points)

    def _to_spool(self, points: Sequence[SpooledPoint]) -> None:
        if points:
            self._spool.add_points(points)
            self.spooled += len(points)
            self.points_spooled += len(points)

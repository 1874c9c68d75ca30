"""Logging that cannot flood: at most one message of a kind per interval (private)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLogger:
    """Logs at most one message per ``kind`` every ``interval_s`` seconds (counts the rest).

    Args:
        log: where messages go.
        interval_s: minimum seconds between two messages of one kind.
        clock: monotonic clock in seconds (tests pass their own).
    """

    def __init__(self, log: logging.Logger, interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` unless a message of this ``kind`` was logged recently."""
        now = self._clock()
        if now - self._last.get(kind, -1e9) < self._interval_s:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        skipped = self._suppressed.pop(kind, 0)
        suffix = f" ({skipped} similar messages suppressed)" if skipped else ""
        self._last[kind] = now
        self._log.log(level, message + suffix, *args)

"""Daemon threads that clean up after the last of them (private).

:class:`WorkerThreads` runs a few loops on daemon threads (the sender's collector and
poster) and calls what :meth:`WorkerThreads.after_stop` was given once every one of them has
ended: at once when they all have, else on the thread that ends last. A request still
running after ``Monitor.finish`` gave up on it thus never finds its HTTP client or spool
closed under it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence


class WorkerThreads:
    """One daemon thread per ``(name, loop)``; not started until :meth:`start`."""

    def __init__(self, loops: Sequence[tuple[str, Callable[[], None]]]) -> None:
        self._lock = threading.Lock()  # guards the running count and the callbacks
        self._running = 0  # threads started and not ended yet
        self._after_stop: list[Callable[[], None]] = []
        self.threads = [threading.Thread(target=self._until_stopped(loop), name=name,
                                         daemon=True) for name, loop in loops]

    def start(self) -> None:
        """Start every thread."""
        self._running = len(self.threads)
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        """Whether a thread still runs."""
        return any(thread.is_alive() for thread in self.threads)

    def after_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every thread has ended (now, when they all have)."""
        with self._lock:
            if self._running:
                self._after_stop.append(callback)
                return
        callback()

    def _until_stopped(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            finally:
                with self._lock:
                    self._running -= 1
                    callbacks, self._after_stop = (
                        (self._after_stop, []) if not self._running else ([], self._after_stop))
                for callback in callbacks:
                    callback()

        return run

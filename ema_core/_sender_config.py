"""The sender's bounds and counters, and what the training thread hands it (private)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def check_positive(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a positive number."""
    if not (isinstance(value, int | float) and value > 0):
        raise ValueError(f"Invalid {name} {value!r}: expected a positive number")


@dataclass(frozen=True)
class SenderConfig:
    """Tuning of the sender; every bound here is a hard bound.

    Attributes:
        flush_interval_ms: how often queued points are sent, in milliseconds.
        max_batch_points: points per request; also wakes the collector early.
        max_queue_points: points held in memory waiting for the server; beyond, the spool.
        initial_backoff_s: first retry delay after a failure, in seconds (doubles each time).
        max_backoff_s: cap of the retry delay, in seconds.
        request_timeout_s: timeout of one HTTP request, in seconds.

    Raises:
        ValueError: a time that is not a positive number, a count that is not an int >= 1.
    """

    flush_interval_ms: float = 500.0
    max_batch_points: int = 5000
    max_queue_points: int = 100_000
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    request_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("flush_interval_ms", "initial_backoff_s", "max_backoff_s",
                     "request_timeout_s"):
            check_positive(name, getattr(self, name))
        for name in ("max_batch_points", "max_queue_points"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"Invalid {name} {value!r}: expected an int >= 1")


@dataclass
class SenderStats:
    """Counters for tests and diagnostics (written by the sender threads only)."""

    points_posted: int = 0
    points_conflicting: int = 0  # posted at a stored (key, step) with another value: not stored
    points_spooled: int = 0
    snapshots_uploaded: int = 0
    max_buffer_points: int = 0
    failures: int = 0
    last_error: str | None = None
    closed_cleanly: bool = False


@dataclass
class SnapshotJob:
    """A best-averager snapshot handed over by the training thread (CPU tensors)."""

    averager: str
    step: int
    metric: str | None
    value: float | None
    tensors: dict[str, Any]
    metadata: dict[str, str]

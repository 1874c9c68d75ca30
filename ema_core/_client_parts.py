"""Small parts of the client: bounds, counters, hand-over records, logging, run directories.

Kept apart from :mod:`ema_core.sender` and :mod:`ema_core.client` so that each stays short;
the public names are re-exported by :mod:`ema_core.sender`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ema_core.spool import SPOOL_FILENAME, Spool
from ema_core.wire import encode_json

__all__ = [
    "MAX_KEY_LENGTH", "STATUSES", "BestTracker", "RateLimitedLogger", "SenderConfig",
    "SenderStats", "SnapshotJob", "check_positive", "config_json", "default_run_dir", "open_spool",
]

MAX_KEY_LENGTH = 512  # the server's limit on a metric key (docs/api.md)
MAX_CONFIG_BYTES = 64 << 10  # the server's default max_object_bytes (docs/settings.md)
MAX_CONFIG_DEPTH = 32  # the server's nesting limit for a config (docs/api.md)


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
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                raise ValueError(f"Invalid {name} {value!r}: expected a positive number")
        for name in ("max_batch_points", "max_queue_points"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"Invalid {name} {value!r}: expected an int >= 1")


@dataclass
class SnapshotJob:
    """A best-averager snapshot handed over by the training thread (CPU tensors)."""

    averager: str
    step: int
    metric: str | None
    value: float | None
    tensors: dict[str, Any]
    metadata: dict[str, str]


@dataclass
class SenderStats:
    """Counters for tests and diagnostics (written by the sender threads only)."""

    points_posted: int = 0
    points_spooled: int = 0
    snapshots_uploaded: int = 0
    max_buffer_points: int = 0
    failures: int = 0
    last_error: str | None = None
    closed_cleanly: bool = field(default=False)



STATUSES = ("finished", "crashed")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_run_dir(project: str, run: str) -> Path:
    """``$EMABOARD_DIR/runs/<project>/<run>`` (``EMABOARD_DIR`` defaults to ``.emaboard``).

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``.
    """
    root = Path(os.environ.get("EMABOARD_DIR", ".emaboard"))
    return root / "runs" / _UNSAFE.sub("_", project) / _UNSAFE.sub("_", run)


@dataclass
class BestTracker:
    """A :meth:`Monitor.track_best` request and the best value seen so far."""

    metric: str
    mode: str
    averager: Any
    name: str
    best: float | None = None

    def improved(self, value: float) -> bool:
        """Whether ``value`` beats the best so far (NaN never does)."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best


def check_positive(name: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a positive number."""
    if not (isinstance(value, int | float) and value > 0):
        raise ValueError(f"Invalid {name} {value!r}: expected a positive number")


def config_json(config: Mapping[str, Any] | None) -> str:
    """``config`` as JSON text, NaN/±Inf as the API's strings (``"NaN"``, ``"Infinity"``, …).

    Raises:
        TypeError: a value JSON cannot hold (e.g. an arbitrary object).
        ValueError: the config is larger than the server takes (:data:`MAX_CONFIG_BYTES` as
            compact JSON) or nests deeper than :data:`MAX_CONFIG_DEPTH` levels: the server
            would refuse the run, so it is refused here, before training starts.
    """
    try:
        text = json.dumps(encode_json(dict(config or {})), allow_nan=False)
    except RecursionError:
        raise ValueError(_too_deep()) from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Invalid config: {exc}; expected JSON-serializable values") from None
    compact = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    size = len(compact.encode())
    if size > MAX_CONFIG_BYTES:
        raise ValueError(
            f"Invalid config: {size} bytes of JSON, over the server's limit of "
            f"{MAX_CONFIG_BYTES} (max_object_bytes): keep it to hyperparameters"
        )
    if _depth(json.loads(text)) > MAX_CONFIG_DEPTH:
        raise ValueError(_too_deep())
    return text


def _too_deep() -> str:
    return (f"Invalid config: nested deeper than {MAX_CONFIG_DEPTH} levels, the server's limit; "
            "flatten it")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def open_spool(run_dir: Path, project: str, run: str, config_json: str) -> Spool:
    """Open the run's spool and record its identity; ``ValueError`` if it holds another run."""
    spool = Spool(run_dir / SPOOL_FILENAME)
    meta = spool.meta()
    if meta.get("project", project) != project or meta.get("name", run) != run:
        spool.close()
        raise ValueError(
            f"Run directory {str(run_dir)!r} belongs to run {meta['project']}/{meta['name']}: "
            "pass another run_dir"
        )
    spool.set_meta(project=project, name=run, config=config_json, status="running",
                   status_sent="1")
    return spool


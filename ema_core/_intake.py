"""Both ends of a Monitor's inbox: the deque between the training thread and the sender
(private).

An inbox entry is ``(key, step, value, wall_time)``, or ``(None, step, WeightStats,
wall_time)`` for an averager's statistics (expanded off the training thread). On the
training thread, :class:`Intake` checks each step, names each scalar's metric key once (a
name without ``/`` becomes ``train/<name>`` when logged by ``Monitor.step``) and appends:
no lock, no network, no disk. On the sender's collector thread, :func:`drain_inbox` takes
every entry, expands statistics into points and numbers them (``seq``) for the outbox.
"""

from __future__ import annotations

import logging
import operator
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ema_core._rate_limited_log import RateLimitedLogger
from ema_core.metric_keys import MAX_KEY_LENGTH, train_key
from ema_core.spool import SpooledPoint

STEP_LIMIT = 1 << 63  # the server stores steps as signed 64-bit integers


def check_step(step: Any) -> int:
    """``step`` as an int in [0, 2**63).

    Raises:
        ValueError: a negative step, one of 2**63 or more, or not an integer.
    """
    if step.__class__ is int and 0 <= step < STEP_LIMIT:
        return int(step)
    try:
        checked = operator.index(step)
    except TypeError:
        checked = -1
    if not 0 <= checked < STEP_LIMIT:
        raise ValueError(f"Invalid step {step!r}: expected an int >= 0 and < 2**63")
    return checked


class Intake:
    """Appends logged scalars to an inbox, and wakes the sender when it holds a batch.

    Args:
        inbox: the sender's inbox (a ``deque(maxlen=0)`` on an inactive rank drops at once).
        nudge: wakes the sender's collector (None on an inactive rank).
        nudge_at: inbox length at which :meth:`nudge_when_full` wakes the sender.
    """

    def __init__(
        self, inbox: deque[Any], nudge: Callable[[], None] | None = None, nudge_at: int = 1
    ) -> None:
        self.inbox = inbox
        self.append = inbox.append
        self._nudge = nudge
        self._nudge_at = nudge_at
        self._train_keys: dict[str, str] = {}  # scalar name -> key (train/<name>)
        self._plain_keys: set[str] = set()  # keys already checked by put(train=False)

    def put(self, step: int, metrics: Mapping[str, Any], now: float, *, train: bool) -> None:
        """Append one point per ``metrics`` entry; keys are checked once per name.

        Raises:
            ValueError: an empty name, or a key over ``MAX_KEY_LENGTH`` characters.
            TypeError: a value that is not a real number.
        """
        append = self.append
        train_keys, plain_keys = self._train_keys, self._plain_keys
        for name, value in metrics.items():
            key = train_keys.get(name) if train else (name if name in plain_keys else None)
            if key is None:
                key = self._new_key(name, train)
            try:
                append((key, step, float(value), now))
            except (TypeError, ValueError):
                raise TypeError(
                    f"Invalid value {value!r} for {key!r}: expected a real number"
                ) from None

    def nudge_when_full(self) -> None:
        """Wake the sender now when the inbox holds a batch (an inactive inbox stays empty)."""
        if len(self.inbox) >= self._nudge_at and self._nudge is not None:
            self._nudge()

    def _new_key(self, name: Any, train: bool) -> str:
        key = name if (not train or "/" in str(name)) else train_key(str(name))
        if not isinstance(name, str) or not name or len(key) > MAX_KEY_LENGTH:
            raise ValueError(
                f"Invalid metric name {name!r}: expected a non-empty string, at most "
                f"{MAX_KEY_LENGTH} characters with its prefix"
            )
        if not train:
            self._plain_keys.add(name)
            return name
        self._train_keys[name] = key
        return key


def drain_inbox(inbox: deque[Any], first_seq: int, log: RateLimitedLogger) -> list[SpooledPoint]:
    """Pop the entries in ``inbox`` now as points numbered from ``first_seq`` (a statistics
    entry becomes one point per statistic; one over ``MAX_KEY_LENGTH`` is dropped, logged)."""
    popleft, points = inbox.popleft, []
    seq = first_seq
    for _ in range(len(inbox)):
        key, step, value, wall_time = popleft()
        if key is None:  # a WeightStats object: expand it here, off the training thread
            for stat_key, stat_value in value.to_metrics().items():
                if len(stat_key) > MAX_KEY_LENGTH:
                    log.log(logging.WARNING, "key", "emaboard dropped statistic %r: longer "
                            "than %d characters", stat_key, MAX_KEY_LENGTH)
                    continue
                points.append((seq, stat_key, step, float(stat_value), wall_time))
                seq += 1
        else:
            points.append((seq, key, step, value, wall_time))
            seq += 1
    return points

"""What :meth:`ema_core.client.Monitor.track_best` remembers (private)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class BestTracker:
    """A :meth:`Monitor.track_best` request and the best value seen so far.

    Attributes:
        metric: the eval metric tracked, e.g. ``"accuracy"``.
        mode: ``"max"`` or ``"min"``.
        averager: the averager object whose shadow is snapshotted.
        name: the averager's name, e.g. ``"ema_0.999"``.
        best: the best value so far (None before the first).
    """

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

"""A posted batch as numpy columns, for PostgreSQL's ingest of new points.

:func:`emaboard_server.app.ingest_postgres.copy_posted` converts the posted points chunk by
chunk into these columns (and from them into ``COPY`` rows) while PostgreSQL stores the
chunks before; the ``latest_metric`` rows come from the columns too (:meth:`Columns.
latest_rows`, the same rows as :func:`emaboard_server.app.ingest.latest_rows` of the
prepared batch, checked by a test), not from per-point Python tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from ema_core.wire import NON_FINITE
from emaboard_server.app.schemas import PointIn

Row = tuple[str, int, float, float]  # ingest.Row: (key, step, value, wall_time)


@dataclass
class Columns:
    """Posted points as columns, appended chunk by chunk (:meth:`add`).

    Attributes:
        as_posted: Whether the posted points, as they are, are the rows (no wire string
            for a non-finite value, no missing ``wall_time``).
    """

    keys: list[str] = field(default_factory=list)
    series: list[np.ndarray] = field(default_factory=list)  # (n,) int32 per chunk
    steps: list[np.ndarray] = field(default_factory=list)  # (n,) int64
    values: list[np.ndarray] = field(default_factory=list)  # (n,) float64, NaN as NaN
    wall_times: list[np.ndarray] = field(default_factory=list)  # (n,) float64, Unix s
    as_posted: bool = True

    def add(self, points: Sequence[PointIn], ids: dict[str, int],
            now: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Append a chunk: wire strings to floats, a missing ``wall_time`` to ``now``.

        Returns:
            The chunk's series ids, steps, values and wall times.
        """
        keys = [p["key"] for p in points]
        values: list[Any] = [p["value"] for p in points]
        wall_times: list[Any] = [p.get("wall_time") for p in points]
        if any(v.__class__ is str for v in values):
            values = [NON_FINITE[v] if v.__class__ is str else v for v in values]
        if any(w is None for w in wall_times):
            wall_times = [now if w is None else w for w in wall_times]
            self.as_posted = False
        chunk = (np.array([ids[k] for k in keys], dtype=np.int32),
                 np.array([p["step"] for p in points], dtype=np.int64),
                 np.array(values, dtype=np.float64), np.array(wall_times, dtype=np.float64))
        self.keys += keys
        self.series.append(chunk[0])
        self.steps.append(chunk[1])
        self.values.append(chunk[2])
        self.wall_times.append(chunk[3])
        return chunk

    def rows(self) -> list[Row]:
        """The points as rows (key, step, value, wall_time), in posted order."""
        return list(zip(self.keys, np.concatenate(self.steps).tolist(),
                        np.concatenate(self.values).tolist(),
                        np.concatenate(self.wall_times).tolist(), strict=True))

    def latest_rows(self, run_id: int) -> list[tuple[Any, ...]]:
        """The ``latest_metric`` rows of the points (each (key, step) once): per key, the
        point with the largest step, and the first-posted minimum and maximum value (NaN
        ignored; None when every value is NaN) with their steps."""
        series, steps = np.concatenate(self.series), np.concatenate(self.steps)
        values, wall_times = np.concatenate(self.values), np.concatenate(self.wall_times)
        posted = np.arange(len(series))
        last = _firsts(series, np.lexsort((-steps, series)))
        finite = np.flatnonzero(~np.isnan(values))
        low = _firsts(series, finite[np.lexsort((posted[finite], values[finite],
                                                 series[finite]))])
        high = _firsts(series, finite[np.lexsort((posted[finite], -values[finite],
                                                  series[finite]))])
        key_of = {int(s): k for s, k in zip(series.tolist(), self.keys, strict=True)}
        out = []
        for sid, i in last.items():
            value = float(values[i])
            lo, hi = low.get(sid), high.get(sid)
            out.append((run_id, key_of[sid], int(steps[i]), None if value != value else value,
                        float(wall_times[i]),
                        None if lo is None else float(values[lo]),
                        None if lo is None else int(steps[lo]),
                        None if hi is None else float(values[hi]),
                        None if hi is None else int(steps[hi])))
        return out


def _firsts(series: np.ndarray, order: np.ndarray) -> dict[int, int]:
    """Per series id, the first index of ``order`` (indices sorted by series first)."""
    if not len(order):
        return {}
    ordered = series[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    return dict(zip(ordered[starts].tolist(), order[starts].tolist(), strict=True))


class PostedRows(Sequence[Row]):
    """:meth:`Columns.rows`, made only when an item is read (the count is known before)."""

    def __init__(self, columns: Columns) -> None:
        self._columns = columns
        self._rows: list[Row] | None = None

    def __len__(self) -> int:
        return len(self._columns.keys)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...

    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if self._rows is None:
            self._rows = self._columns.rows()
        return self._rows[index]

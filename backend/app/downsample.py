"""Server-side downsampling that keeps spikes.

The series is cut into equal-count buckets; each bucket keeps its first point, its minimum,
its maximum and its last point (the M4 idea: Jugel et al., "M4: A Visualization-Oriented
Time Series Data Aggregation", VLDB 2014), and, when the series has NaN values, also its
first NaN, so a divergence is never averaged away. ±Inf take part in min/max as they are.
"""

from __future__ import annotations

import math

import numpy as np

MIN_POINTS = 5


def downsample_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (sorted, unique) of the points to keep so that at most ``max_points`` remain.

    Args:
        values: The series' values in step order, shape ``(n,)``, float64.
        max_points: The most points to return; at least 5.

    Returns:
        int64 indices, shape ``(m,)`` with ``m <= max_points``; all of ``range(n)`` when
        ``n <= max_points``. The first and the last point are always kept, and so are the
        series' finite minimum and maximum.

    Raises:
        ValueError: ``max_points`` below 5.
    """
    n = values.shape[0]
    if max_points < MIN_POINTS:
        raise ValueError(f"Invalid max_points {max_points}: expected at least {MIN_POINTS}")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    nan = np.isnan(values)
    has_nan = bool(nan.any())
    size = math.ceil(n / (max_points // (5 if has_nan else 4)))
    buckets = math.ceil(n / size)
    starts = np.arange(buckets, dtype=np.int64) * size
    picks = [starts, np.minimum(starts + size, n) - 1]
    for fill, pick in ((-np.inf, np.argmax), (np.inf, np.argmin)):
        padded = np.full(buckets * size, fill)  # padding never wins: real points come first
        padded[:n] = np.where(nan, fill, values)
        picks.append(starts + pick(padded.reshape(buckets, size), axis=1))
    if has_nan:
        flags = np.zeros(buckets * size, dtype=bool)
        flags[:n] = nan
        rows = flags.reshape(buckets, size)
        picks.append((starts + rows.argmax(axis=1))[rows.any(axis=1)])
    return np.unique(np.concatenate(picks))

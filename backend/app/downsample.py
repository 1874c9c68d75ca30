"""Server-side downsampling that keeps spikes.

The series is cut into equal-count buckets; each bucket keeps its first point, its minimum,
its maximum and its last point (the M4 idea: Jugel et al., "M4: A Visualization-Oriented
Time Series Data Aggregation", VLDB 2014). NaN counts as the largest value when picking a
bucket's maximum, so a divergence is never averaged away; ±Inf win min/max naturally.
"""

from __future__ import annotations

import math

import numpy as np

POINTS_PER_BUCKET = 4


def downsample_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (sorted, unique) of the points to keep so that at most ``max_points`` remain.

    Args:
        values: The series' values in step order, shape ``(n,)``, float64.
        max_points: The most points to return; must be ≥ 4.

    Returns:
        int64 indices, shape ``(m,)`` with ``m <= max_points``; all of ``range(n)`` when
        ``n <= max_points``. The last point is always kept.

    Raises:
        ValueError: ``max_points`` below 4.
    """
    n = values.shape[0]
    if max_points < POINTS_PER_BUCKET:
        raise ValueError(f"Invalid max_points {max_points}: expected at least {POINTS_PER_BUCKET}")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    size = math.ceil(n / (max_points // POINTS_PER_BUCKET))
    buckets = math.ceil(n / size)
    nan = np.isnan(values)
    high = np.full(buckets * size, -np.inf)
    high[:n] = np.where(nan, np.inf, values)
    low = np.full(buckets * size, np.inf)
    low[:n] = np.where(nan, np.inf, values)
    starts = np.arange(buckets, dtype=np.int64) * size
    picks = np.concatenate([
        starts,
        np.minimum(starts + size, n) - 1,
        starts + high.reshape(buckets, size).argmax(axis=1),
        starts + low.reshape(buckets, size).argmin(axis=1),
    ])
    return np.unique(picks)

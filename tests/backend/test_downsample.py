from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.app.downsample import downsample_indices

values = st.lists(
    st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=600
)


@settings(max_examples=200, deadline=None)
@given(values=values, max_points=st.integers(min_value=5, max_value=200))
def test_indices_are_sorted_unique_bounded_and_keep_extremes(
    values: list[float], max_points: int
) -> None:
    arr = np.array(values, dtype=np.float64)
    keep = downsample_indices(arr, max_points)
    assert len(keep) <= max_points
    assert list(keep) == sorted(set(keep.tolist()))
    if len(values) == 0:
        return
    assert keep[-1] == len(values) - 1 and keep[0] == 0
    kept = arr[keep]
    finite = arr[~np.isnan(arr)]
    if finite.size:
        assert np.nanmax(kept) == finite.max()  # the global spike survives
        assert np.nanmin(kept) == finite.min()
    if np.isnan(arr).any():
        assert np.isnan(kept).any()  # a NaN (divergence) is never averaged away


def test_short_series_is_kept_whole() -> None:
    assert downsample_indices(np.arange(5.0), 5).tolist() == [0, 1, 2, 3, 4]


def test_every_bucket_keeps_its_extremes() -> None:
    arr = np.zeros(1000)
    arr[[10, 260, 777]] = [5.0, -3.0, math.inf]
    keep = downsample_indices(arr, 40)
    assert {10, 260, 777} <= set(keep.tolist())
    assert len(keep) <= 40


def test_max_points_below_five_is_rejected() -> None:
    with pytest.raises(ValueError, match="Invalid max_points 4: expected at least 5"):
        downsample_indices(np.zeros(10), 4)

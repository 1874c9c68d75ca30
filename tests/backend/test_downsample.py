"""read_downsampled against real SQLite and PostgreSQL databases: bounded, ordered, spikes
and NaN kept."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, create_engine, insert, select

from emaboard_server.app.downsample import _BUCKET_STEPS, _BUCKET_STEPS_SQLITE, read_downsampled
from emaboard_server.app.ingest import POINTS, RUNS
from emaboard_server.app.models import Base
from emaboard_server.app.read_points import MAX_STEP
from emaboard_server.app.series_ids import SERIES
from tests.utils.databases import DATABASES

values = st.lists(
    st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=600
)


@pytest.fixture(scope="module", params=DATABASES)
def connection(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """A connection to a schema holding run 1, in memory (SQLite) or a new PostgreSQL database."""
    url = "sqlite://"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_cluster").create_database()
    engine = create_engine(url)
    Base.metadata.create_all(engine)
    with engine.connect() as conn:
        conn.execute(insert(RUNS).values(id=1, project="p", name="r", config={}, status="running",
                                         created_at=0.0, last_seen_at=0.0, summary={}))
        yield conn
    engine.dispose()


def store(conn: Connection, key: str, steps: list[int], vals: list[float]) -> None:
    series_id = conn.execute(select(SERIES.c.id).where(SERIES.c.key == key)).scalar()
    if series_id is None:
        series_id = conn.execute(insert(SERIES).values(run_id=1, key=key)).inserted_primary_key[0]
    conn.execute(POINTS.delete().where(POINTS.c.series_id == series_id))
    rows = [
        {"series_id": series_id, "step": s, "value": None if math.isnan(v) else v,
         "wall_time": float(s)}
        for s, v in zip(steps, vals, strict=True)
    ]
    if rows:
        conn.execute(insert(POINTS), rows)


def read(
    conn: Connection, key: str, max_points: int, **kw: int | None
) -> tuple[list[int], np.ndarray]:
    got = read_downsampled(conn, run_id=1, key=key, min_step=kw.get("min_step"),
                           max_step=kw.get("max_step"), max_points=max_points)
    return list(got.steps), got.values


@settings(max_examples=150, deadline=None)
@given(vals=values, max_points=st.integers(min_value=5, max_value=200),
       stride=st.integers(min_value=1, max_value=7))
def test_points_are_bounded_ordered_and_keep_extremes(
    connection: Connection, vals: list[float], max_points: int, stride: int
) -> None:
    steps = [i * stride for i in range(len(vals))]
    store(connection, "h", steps, vals)
    got_steps, got = read(connection, "h", max_points)
    assert len(got_steps) <= max_points
    assert got_steps == sorted(set(got_steps)) and set(got_steps) <= set(steps)
    if not vals:
        return
    assert got_steps[0] == steps[0] and got_steps[-1] == steps[-1]
    arr = np.array(vals)
    np.testing.assert_array_equal(got, arr[[s // stride for s in got_steps]])
    finite = arr[~np.isnan(arr)]
    if finite.size:
        assert np.nanmax(got) == finite.max()  # the global spike survives
        assert np.nanmin(got) == finite.min()
    if np.isnan(arr).any():
        assert np.isnan(got).any()  # a NaN (divergence) is never averaged away


def test_short_series_is_kept_whole(connection: Connection) -> None:
    store(connection, "s", [0, 1, 2, 3, 4], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert read(connection, "s", 5)[0] == [0, 1, 2, 3, 4]


def test_every_bucket_keeps_its_extremes_and_step_range_applies(connection: Connection) -> None:
    vals = [0.0] * 1000
    for step, value in ((10, 5.0), (260, -3.0), (777, math.inf)):
        vals[step] = value
    store(connection, "e", list(range(1000)), vals)
    steps, _ = read(connection, "e", 40)
    assert {10, 260, 777} <= set(steps) and len(steps) <= 40
    steps, _ = read(connection, "e", 40, min_step=200, max_step=799)
    assert steps[0] == 200 and steps[-1] == 799 and {260, 777} <= set(steps)


def test_max_points_below_five_is_rejected(connection: Connection) -> None:
    with pytest.raises(ValueError, match="Invalid max_points 4: expected at least 5"):
        read(connection, "s", 4)


@settings(max_examples=150, deadline=None)
@given(vals=st.lists(st.sampled_from([0.0, 1.0, -2.5, math.inf, -math.inf, math.nan]),
                     min_size=1, max_size=300),
       buckets=st.integers(min_value=1, max_value=60), stride=st.integers(min_value=1, max_value=5),
       near_max=st.booleans())
def test_sqlite_bucket_ranges_answer_as_the_group_by(
    connection: Connection, vals: list[float], buckets: int, stride: int, near_max: bool
) -> None:
    """SQLite's sort-free query (buckets as step ranges) equals the portable GROUP BY one.

    Ties (the earliest step wins), NaN, ±Inf, empty buckets and steps next to the largest
    step (where ``e + width`` would overflow) included.
    """
    if connection.dialect.name != "sqlite":
        pytest.skip("the bucket-range query is SQLite's")
    start = MAX_STEP - stride * (len(vals) - 1) if near_max else 3
    steps = [start + i * stride for i in range(len(vals))]
    store(connection, "q", steps, vals)
    width = -(-(steps[-1] - steps[0] + 1) // buckets)
    series_id = connection.execute(select(SERIES.c.id).where(SERIES.c.key == "q")).scalar()
    params = {"series_id": series_id, "lo": steps[0], "hi": steps[-1], "width": width}
    expected = [tuple(row) for row in connection.execute(_BUCKET_STEPS, params)]
    got = [tuple(row) for row in connection.execute(_BUCKET_STEPS_SQLITE, params)]
    assert got == expected and len(got) <= buckets

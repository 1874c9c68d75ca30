"""The columnar form of a posted batch (PostgreSQL's ingest) against ingest.prepare's rows:
the same rows, the same latest_metric rows, the same "as posted"."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from emaboard_server.app.ingest import latest_rows, prepare
from emaboard_server.app.posted import Columns, PostedRows

NOW = 1234.5
wire_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=True, width=64),
    st.sampled_from(["NaN", "Infinity", "-Infinity", 0.0, -0.0, 1.0]),
)
point = st.fixed_dictionaries(
    {"key": st.sampled_from(["a", "b/c", "ünï"]), "step": st.integers(0, 2**63 - 1),
     "value": wire_values},
    optional={"wall_time": st.one_of(st.none(), st.floats(0, 1e10))},
)
# COPY took the batch: no (key, step) twice.
batches = st.lists(point, min_size=1, max_size=60,
                   unique_by=lambda p: (p["key"], p["step"]))


def _same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
            ) or (a == b and str(a) == str(b))  # -0.0 is not 0.0


@settings(max_examples=300, deadline=None)
@given(points=batches, chunk=st.integers(1, 7))
def test_columns_give_prepare_s_rows_and_latest_rows(points: list[dict[str, Any]],
                                                     chunk: int) -> None:
    ids = {"a": 3, "b/c": 1, "ünï": 2}
    columns = Columns()
    for start in range(0, len(points), chunk):
        columns.add(points[start:start + chunk], ids, NOW)  # type: ignore[arg-type]
    prepared = prepare(points, NOW)  # type: ignore[arg-type]
    rows = PostedRows(columns)
    assert len(rows) == len(prepared.rows)
    assert all(_same(x, y) for got, want in zip(rows, prepared.rows, strict=True)
               for x, y in zip(got, want, strict=True))
    assert columns.as_posted == prepared.as_posted
    got = sorted(columns.latest_rows(7), key=lambda row: row[1])
    want = sorted(latest_rows(7, prepared), key=lambda row: row[1])
    assert len(got) == len(want)
    for got_row, want_row in zip(got, want, strict=True):
        assert all(_same(x, y) for x, y in zip(got_row, want_row, strict=True)), (
            got_row, want_row)


def test_an_all_nan_key_has_no_extremes() -> None:
    columns = Columns()
    columns.add([{"key": "a", "step": 2, "value": "NaN", "wall_time": 1.0},  # type: ignore[list-item]
                 {"key": "a", "step": 1, "value": "NaN"}], {"a": 1}, NOW)
    assert columns.latest_rows(7) == [(7, "a", 2, None, 1.0, None, None, None, None)]
    assert not columns.as_posted

"""Ingest's COPY path on PostgreSQL (emaboard_server.app.ingest_postgres), with SQLite's
multi-row INSERT as the reference: the same posted points read back the same."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from emaboard_server.app.core.config import Settings
from tests.utils.databases import both_databases

KEYS = ["train/loss", "tab\there", "new\nline", "back\\slash", 'quote"s', "ünïcødé/σ_rel",
        "emoji/🚀", "cr\rlf", "x" * 512]
VALUES = [0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308,
          -2.5e-300]


def _wire(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


@both_databases
def test_every_key_and_value_reads_back_as_posted(client: TestClient, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}/metrics"
    body = {"points": [{"key": key, "step": step, "value": _wire(value), "wall_time": 1.25 + step}
                       for key in KEYS for step, value in enumerate(VALUES)]}
    assert client.post(url, json=body).json()["inserted"] == len(KEYS) * len(VALUES)
    series = client.get(url, params={"keys": KEYS}).json()["series"]
    for key in KEYS:
        assert series[key]["steps"] == list(range(len(VALUES)))
        assert series[key]["values"] == [_wire(v) for v in VALUES]
        assert series[key]["wall_times"] == [1.25 + s for s in range(len(VALUES))]
    assert client.post(url, json=body).json() == {
        "accepted": len(KEYS) * len(VALUES), "inserted": 0, "conflicts": 0}


@pytest.mark.parametrize("database", ["postgres"])
def test_a_point_stored_behind_ingest_s_back_falls_back_to_on_conflict(
    client: TestClient, run: dict[str, Any], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # A row ingest's lookup cannot see (no latest_metric entry): COPY meets it, the
    # transaction is rolled back and the batch stored again in a new one by INSERT ... ON
    # CONFLICT DO NOTHING: the rest stored once, the row kept.
    engine = create_engine(settings.resolved_database_url())
    with engine.begin() as connection:
        series_id = connection.exec_driver_sql(
            f"INSERT INTO metric_series (run_id, key) VALUES ({run['id']}, 'a') RETURNING id"
        ).scalar()
        connection.exec_driver_sql(
            "INSERT INTO metric_point (series_id, step, value, wall_time) "
            f"VALUES ({series_id}, 5, 42.0, 0)")
    url = f"/api/runs/{run['id']}/metrics"
    body = {"points": [{"key": "a", "step": s, "value": float(s)} for s in range(10)]}
    assert client.post(url, json=body).status_code == 200
    series = client.get(url, params={"keys": "a"}).json()["series"]["a"]
    assert series["steps"] == list(range(10))
    assert series["values"] == [*range(5), 42.0, *range(6, 10)]
    assert "a posted point existed although ingest had checked" in caplog.text
    engine.dispose()


@pytest.mark.parametrize("database", ["postgres"])
def test_new_points_take_one_copy_of_the_posted_batch_and_others_the_careful_way(
    client: TestClient, run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch of new points is stored by copy_posted as posted; a retry, a conflict or a
    # repeat inside the batch makes its COPY fail, and the careful path stores the batch.
    from emaboard_server.app import ingest_postgres
    from emaboard_server.app.exceptions import PointExists

    outcomes: list[str] = []
    real = ingest_postgres.copy_posted

    @contextlib.contextmanager
    def spy(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            with real(*args, **kwargs) as columns:
                yield columns
        except PointExists:
            outcomes.append("exists")
            raise
        outcomes.append("stored")

    monkeypatch.setattr(ingest_postgres, "copy_posted", spy)
    url = f"/api/runs/{run['id']}/metrics"
    body = {"points": [{"key": key, "step": step, "value": _wire(value)}  # no wall_time
                       for step, value in enumerate(VALUES) for key in ("a", "b")]}
    assert client.post(url, json=body).json() == {
        "accepted": 18, "inserted": 18, "conflicts": 0}
    assert client.post(url, json=body).json() == {"accepted": 18, "inserted": 0, "conflicts": 0}
    changed = {"points": [{"key": "a", "step": 0, "value": 7.0},
                          {"key": "a", "step": 100, "value": 1.0}]}
    assert client.post(url, json=changed).json() == {
        "accepted": 2, "inserted": 1, "conflicts": 1}
    twice = {"points": [{"key": "c", "step": 1, "value": 1.0}, {"key": "c", "step": 1,
                                                                "value": 2.0}]}
    assert client.post(url, json=twice).json() == {"accepted": 2, "inserted": 1, "conflicts": 1}
    assert outcomes == ["stored", "exists", "exists", "exists"]
    series = client.get(url, params={"keys": ["a", "b", "c"]}).json()["series"]
    for key in ("a", "b"):
        assert series[key]["values"][:len(VALUES)] == [_wire(v) for v in VALUES]
    assert series["a"]["steps"] == [*range(len(VALUES)), 100]
    assert series["c"]["values"] == [1.0]
    latest = {row["key"]: row for row in client.get(f"/api/runs/{run['id']}/keys").json()}
    assert latest["a"]["step"] == 100 and latest["b"]["step"] == len(VALUES) - 1

"""Ingest's COPY path on PostgreSQL (emaboard_server.app.ingest_postgres), with SQLite's
multi-row INSERT as the reference: the same posted points read back the same."""

from __future__ import annotations

import math
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
        connection.exec_driver_sql(
            "INSERT INTO metric_point (run_id, key, step, value, wall_time) "
            f"VALUES ({run['id']}, 'a', 5, 42.0, 0)")
    url = f"/api/runs/{run['id']}/metrics"
    body = {"points": [{"key": "a", "step": s, "value": float(s)} for s in range(10)]}
    assert client.post(url, json=body).status_code == 200
    series = client.get(url, params={"keys": "a"}).json()["series"]["a"]
    assert series["steps"] == list(range(10))
    assert series["values"] == [*range(5), 42.0, *range(6, 10)]
    assert "a posted point existed although ingest had checked" in caplog.text
    engine.dispose()

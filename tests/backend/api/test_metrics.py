from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from emaboard_server.app.core.config import Settings
from emaboard_server.app.main import create_app
from tests.backend.conftest import HOSTS, assert_error, points
from tests.utils.databases import both_databases

VALUE_MESSAGE = "Input should be a number or one of 'NaN', 'Infinity', '-Infinity'"


def post(client: TestClient, run_id: int, body: Any) -> Any:
    return client.post(f"/api/runs/{run_id}/metrics", json=body)


def series(client: TestClient, run_id: int, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/runs/{run_id}/metrics", params=params)
    assert response.status_code == 200, response.text
    return response.json()["series"]


@both_databases
def test_post_then_read_back(client: TestClient, run: dict[str, Any]) -> None:
    body = {
        "points": [
            {"key": "train/loss", "step": s, "value": 1.0 / (s + 1), "wall_time": 100.0 + s}
            for s in range(5)
        ]
    }
    assert post(client, run["id"], body).json() == {"accepted": 5, "inserted": 5, "conflicts": 0}
    got = series(client, run["id"], keys="train/loss")["train/loss"]
    assert got == {
        "steps": [0, 1, 2, 3, 4],
        "values": [1.0, 0.5, 1 / 3, 0.25, 0.2],
        "wall_times": [100.0, 101.0, 102.0, 103.0, 104.0],
    }


@both_databases
def test_wall_time_defaults_to_receive_time(client: TestClient, run: dict[str, Any]) -> None:
    post(client, run["id"], {"points": points("a", range(1))})
    wall_time = series(client, run["id"], keys="a")["a"]["wall_times"][0]
    assert abs(wall_time - client.get(f"/api/runs/{run['id']}").json()["last_seen_at"]) < 1e-6


@both_databases
def test_non_finite_values_round_trip_as_strings(client: TestClient, run: dict[str, Any]) -> None:
    body = {
        "points": [
            {"key": "x", "step": 0, "value": "NaN"},
            {"key": "x", "step": 1, "value": "Infinity"},
            {"key": "x", "step": 2, "value": "-Infinity"},
            {"key": "x", "step": 3, "value": 2},
        ]
    }
    assert post(client, run["id"], body).json()["inserted"] == 4
    assert series(client, run["id"], keys="x")["x"]["values"] == [
        "NaN",
        "Infinity",
        "-Infinity",
        2.0,
    ]
    assert client.get(f"/api/runs/{run['id']}/keys").json()[0]["value"] == 2.0


@both_databases
def test_nan_is_the_latest_value_when_it_is_last(client: TestClient, run: dict[str, Any]) -> None:
    post(client, run["id"], {"points": [{"key": "x", "step": 9, "value": "NaN"}]})
    assert client.get(f"/api/runs/{run['id']}/keys").json() == [
        {
            "key": "x",
            "step": 9,
            "value": "NaN",
            "wall_time": pytest.approx(client.get(f"/api/runs/{run['id']}").json()["last_seen_at"]),
        }
    ]


@both_databases
def test_retry_stores_nothing_twice_and_first_value_wins(
    client: TestClient, run: dict[str, Any]
) -> None:
    body = {"points": points("a", range(10), 1.0)}
    assert post(client, run["id"], body).json() == {"accepted": 10, "inserted": 10, "conflicts": 0}
    assert post(client, run["id"], body).json() == {"accepted": 10, "inserted": 0, "conflicts": 0}
    overlap = {"points": points("a", range(5, 15), 2.0)}
    assert post(client, run["id"], overlap).json() == {"accepted": 10, "inserted": 5,
                                                       "conflicts": 5}
    got = series(client, run["id"], keys="a")["a"]
    assert got["steps"] == list(range(15))
    assert got["values"] == [1.0] * 10 + [2.0] * 5


@both_databases
def test_repeat_inside_one_batch_keeps_the_first(client: TestClient, run: dict[str, Any]) -> None:
    body = {"points": [{"key": "a", "step": 1, "value": 1}, {"key": "a", "step": 1, "value": 2}]}
    assert post(client, run["id"], body).json() == {"accepted": 2, "inserted": 1, "conflicts": 1}
    assert series(client, run["id"], keys="a")["a"]["values"] == [1.0]


@both_databases
def test_a_different_value_at_a_stored_step_is_a_counted_and_logged_conflict(
    client: TestClient, run: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    first = [{"key": "a", "step": s, "value": v} for s, v in ((1, 1.0), (2, "NaN"), (3, 3.0))]
    assert post(client, run["id"], {"points": first}).json()["inserted"] == 3
    same = [{"key": "a", "step": s, "value": v} for s, v in ((1, 1), (2, "NaN"), (3, 3.0))]
    with caplog.at_level("WARNING", logger="emaboard_server.app.api.routes.metrics"):
        assert post(client, run["id"], {"points": same}).json() == {
            "accepted": 3, "inserted": 0, "conflicts": 0}  # a replay: idempotent, no log
        assert caplog.records == []
        other = [{"key": "a", "step": 2, "value": 2.0}, {"key": "a", "step": 3, "value": 3.5},
                 {"key": "b", "step": 3, "value": 1.0}]
        assert post(client, run["id"], {"points": other}).json() == {
            "accepted": 3, "inserted": 1, "conflicts": 2}
    assert [r.getMessage() for r in caplog.records] == [
        f"run {run['id']}: 2 point(s) posted again at an existing (key, step) with a different "
        "value (a@2, a@3); the stored values are kept. Two trainings writing into one run? "
        "Resume only from a checkpoint (resume='allow'), or start a new run"]
    assert series(client, run["id"], keys="a")["a"]["values"] == [1.0, "NaN", 3.0]


@both_databases
def test_out_of_order_steps_are_stored_and_read_sorted(
    client: TestClient, run: dict[str, Any]
) -> None:
    post(client, run["id"], {"points": points("a", range(10, 20))})
    assert post(client, run["id"], {"points": points("a", range(0, 12))}).json()["inserted"] == 10
    assert series(client, run["id"], keys="a")["a"]["steps"] == list(range(20))
    latest = client.get(f"/api/runs/{run['id']}/keys").json()
    assert latest[0]["step"] == 19


@both_databases
def test_empty_batch_is_accepted(client: TestClient, run: dict[str, Any]) -> None:
    assert post(client, run["id"], {"points": []}).json() == {"accepted": 0, "inserted": 0,
                                                              "conflicts": 0}
    assert client.get(f"/api/runs/{run['id']}").json()["last_step"] is None


@both_databases
def test_post_to_missing_run_is_404(client: TestClient) -> None:
    assert_error(post(client, 42, {"points": points("a", range(1))}), 404, "Run not found")


@both_databases
@pytest.mark.parametrize(
    ("point", "message"),
    [
        (
            {"key": "a", "step": 1, "value": "abc"},
            f"Invalid point 1 field 'value': {VALUE_MESSAGE}",
        ),
        ({"key": "a", "step": 1, "value": None}, f"Invalid point 1 field 'value': {VALUE_MESSAGE}"),
        ({"key": "a", "step": 1, "value": True}, f"Invalid point 1 field 'value': {VALUE_MESSAGE}"),
        (
            {"key": "a", "step": -1, "value": 1},
            "Invalid point 1 field 'step': Input should be greater than or equal to 0",
        ),
        (
            {"key": "a", "step": 1.5, "value": 1},
            "Invalid point 1 field 'step': Input should be a valid integer",
        ),
        (
            {"key": "a", "step": "1", "value": 1},
            "Invalid point 1 field 'step': Input should be a valid integer",
        ),
        (
            {"key": "", "step": 1, "value": 1},
            "Invalid point 1 field 'key': String should have at least 1 character",
        ),
        (
            {"key": 5, "step": 1, "value": 1},
            "Invalid point 1 field 'key': Input should be a valid string",
        ),
        ({"step": 1, "value": 1}, "Invalid point 1 field 'key': Field required"),
        (
            {"key": "a", "step": 1, "value": 1, "wall_time": "now"},
            "Invalid point 1 field 'wall_time': Input should be a valid number",
        ),
        ("not an object", "Invalid point 1: Input should be an object"),
    ],
)
def test_bad_point_is_422_naming_index_and_field(
    client: TestClient, run: dict[str, Any], point: Any, message: str
) -> None:
    body = {"points": [{"key": "a", "step": 0, "value": 1}, point]}
    error = assert_error(post(client, run["id"], body), 422, message)
    assert error["details"][0]["loc"][:3] == ["body", "points", 1]
    assert client.get(f"/api/runs/{run['id']}/keys").json() == []  # nothing of the batch stored


@both_databases
@pytest.mark.parametrize(("bad", "message"), [
    ({"key": "k3", "step": 4321, "value": None}, f"field 'value': {VALUE_MESSAGE}"),
    ({"key": "k3", "step": 4321, "value": True}, f"field 'value': {VALUE_MESSAGE}"),
    ({"key": "k3", "step": -1, "value": 1.0},
     "field 'step': Input should be greater than or equal to 0"),
    ({"key": "k3", "step": 4321, "value": 1.0, "wall_time": True},
     "field 'wall_time': Input should be a valid number"),
    ({"key": "k3", "step": 4321, "value": 1.0, "tag": "x"},
     "field 'tag': Extra inputs are not permitted"),
])
def test_a_bad_point_deep_in_a_big_batch_stores_nothing_of_it(
    client: TestClient, run: dict[str, Any], bad: dict[str, Any], message: str
) -> None:
    # Validation stops the whole batch, on PostgreSQL as on SQLite: no point, key or step.
    url = f"/api/runs/{run['id']}/metrics"
    good = [{"key": f"k{i % 10}", "step": i, "value": i * 0.5} for i in range(5000)]
    assert_error(client.post(url, json={"points": [*good[:4321], bad, *good[4321:]]}), 422,
                 f"Invalid point 4321 {message}")
    assert client.get(f"/api/runs/{run['id']}/keys").json() == []
    assert client.get(f"/api/runs/{run['id']}").json()["last_step"] is None
    assert client.post(url, json={"points": good}).json() == {
        "accepted": 5000, "inserted": 5000, "conflicts": 0}


@both_databases
def test_non_finite_wall_time_is_rejected(client: TestClient, run: dict[str, Any]) -> None:
    response = client.post(
        f"/api/runs/{run['id']}/metrics",
        content=b'{"points": [{"key": "a", "step": 0, "value": 1, "wall_time": Infinity}]}',
        headers={"content-type": "application/json"},
    )
    assert_error(
        response, 422, "Invalid point 0 field 'wall_time': Input should be a finite number"
    )


@both_databases
def test_malformed_json_is_422(client: TestClient, run: dict[str, Any]) -> None:
    response = client.post(
        f"/api/runs/{run['id']}/metrics",
        content=b'{"points": [',
        headers={"content-type": "application/json"},
    )
    error = assert_error(
        response,
        422,
        "Invalid JSON body: Invalid JSON: EOF while parsing a list at line 1 column 12",
    )
    assert error["details"] == [
        {"loc": ["body"], "message": "Invalid JSON: EOF while parsing a list at line 1 column 12"}
    ]


@both_databases
def test_body_without_points_is_422(client: TestClient, run: dict[str, Any]) -> None:
    assert_error(
        post(client, run["id"], {"pts": []}), 422, "Invalid field 'points': Field required"
    )
    assert_error(
        post(client, run["id"], [1, 2]), 422, "Invalid request body: Input should be an object"
    )


def test_too_many_points_is_413(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path / "d", allowed_hosts=HOSTS,
                        max_points_per_request=10, token=None)
    with TestClient(create_app(settings)) as client:
        run_id = client.post("/api/runs", json={"project": "p", "name": "r"}).json()["id"]
        assert post(client, run_id, {"points": points("a", range(10))}).status_code == 200
        assert_error(
            post(client, run_id, {"points": points("a", range(11))}),
            413,
            "Too many points: 11 > max_points_per_request 10",
        )


def test_body_over_max_body_bytes_is_413(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path / "d", allowed_hosts=HOSTS,
                        max_body_bytes=1 << 20, token=None)
    message = "Request body too large: the limit is 1048576 bytes (max_body_bytes)"
    with TestClient(create_app(settings)) as client:
        run_id = client.post("/api/runs", json={"project": "p", "name": "r"}).json()["id"]
        huge = {"points": points("k" * 500, range(3000))}
        assert_error(post(client, run_id, huge), 413, message)

        def chunks() -> Any:  # no Content-Length: the cap applies while streaming
            for _ in range(40):
                yield b" " * 65536

        response = client.post(
            f"/api/runs/{run_id}/metrics",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert_error(response, 413, message)
        assert client.get(f"/api/runs/{run_id}/keys").json() == []


@both_databases
def test_read_keys_prefix_and_step_range(client: TestClient, run: dict[str, Any]) -> None:
    batch = points("layer/a/rel_drift/ema", range(10)) + points("layer/b/rel_drift/ema", range(10))
    batch += points("train/loss", range(10)) + points("layer_x", range(3))
    post(client, run["id"], {"points": batch})
    got = series(client, run["id"], prefix="layer/")
    assert sorted(got) == ["layer/a/rel_drift/ema", "layer/b/rel_drift/ema"]
    got = series(client, run["id"], keys="train/loss", min_step=3, max_step=5)
    assert got == {
        "train/loss": {
            "steps": [3, 4, 5],
            "values": [1.0] * 3,
            "wall_times": got["train/loss"]["wall_times"],
        }
    }
    assert sorted(series(client, run["id"])) == [
        "layer/a/rel_drift/ema",
        "layer/b/rel_drift/ema",
        "layer_x",
        "train/loss",
    ]
    assert series(client, run["id"], keys="unknown") == {
        "unknown": {"steps": [], "values": [], "wall_times": []}
    }


@both_databases
def test_prefix_is_literal_not_a_wildcard(client: TestClient, run: dict[str, Any]) -> None:
    post(client, run["id"], {"points": points("a_b", range(1)) + points("axb", range(1))})
    assert list(series(client, run["id"], prefix="a_")) == ["a_b"]
    assert series(client, run["id"], prefix="%") == {}


@both_databases
def test_read_downsamples_keeping_spikes_and_last(client: TestClient, run: dict[str, Any]) -> None:
    batch = [{"key": "a", "step": s, "value": 0.0} for s in range(5000)]
    batch[1234]["value"] = 99.0
    batch[3210]["value"] = -7.0
    batch[4000]["value"] = "NaN"
    post(client, run["id"], {"points": batch})
    got = series(client, run["id"], keys="a", max_points=100)["a"]
    assert len(got["steps"]) <= 100
    assert got["steps"] == sorted(got["steps"])
    kept = dict(zip(got["steps"], got["values"], strict=True))
    assert kept[1234] == 99.0 and kept[3210] == -7.0 and kept[4000] == "NaN"
    assert got["steps"][0] == 0 and got["steps"][-1] == 4999


def test_bad_query_parameters_are_422(client: TestClient, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}/metrics"
    assert_error(
        client.get(url, params={"max_points": 4}),
        422,
        "Invalid query parameter 'max_points': Input should be greater than or equal to 5",
    )
    assert_error(
        client.get(url, params={"min_step": "x"}),
        422,
        "Invalid query parameter 'min_step': "
        "Input should be a valid integer, unable to parse string as an integer",
    )


def test_read_metrics_of_missing_run_is_404(client: TestClient) -> None:
    assert_error(client.get("/api/runs/3/metrics"), 404, "Run not found")


@both_databases
def test_keys_lists_latest_point_per_key(client: TestClient, run: dict[str, Any]) -> None:
    post(
        client,
        run["id"],
        {
            "points": [
                {"key": "b", "step": 2, "value": 5, "wall_time": 1.0},
                {"key": "a", "step": 7, "value": 3, "wall_time": 2.0},
                {"key": "a", "step": 3, "value": 4, "wall_time": 3.0},
            ]
        },
    )
    assert client.get(f"/api/runs/{run['id']}/keys").json() == [
        {"key": "a", "step": 7, "value": 3.0, "wall_time": 2.0},
        {"key": "b", "step": 2, "value": 5.0, "wall_time": 1.0},
    ]


def test_responses_never_hold_bare_nan(client: TestClient, run: dict[str, Any]) -> None:
    post(
        client,
        run["id"],
        {
            "points": [
                {"key": "eval/live/accuracy", "step": 0, "value": "NaN"},
                {"key": "eval/live/accuracy", "step": 1, "value": "Infinity"},
            ]
        },
    )
    for url in (
        f"/api/runs/{run['id']}",
        f"/api/runs/{run['id']}/keys",
        f"/api/runs/{run['id']}/metrics",
        "/api/runs",
    ):
        text = client.get(url).text
        assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text.replace(
            '"Infinity"', ""
        )
    assert client.get(f"/api/runs/{run['id']}").json()["best"] == {
        "live": {"metric": "accuracy", "value": "Infinity", "step": 1}
    }
    assert math.isinf(float(client.get(f"/api/runs/{run['id']}/keys").json()[0]["value"]))


def test_validation_stops_at_the_first_bad_point(client: TestClient, run: dict[str, Any]) -> None:
    # A huge list of bad items must not cost seconds of error collection: the first bad
    # point's problems are reported, the rest of the batch is not looked at.
    body = {"points": [{"key": "a", "step": 0, "value": 1}] + [{"key": "", "step": -1}] * 500}
    error = assert_error(
        post(client, run["id"], body),
        422,
        "Invalid point 1 field 'key': String should have at least 1 character",
    )
    assert [detail["loc"] for detail in error["details"]] == [
        ["body", "points", 1, "key"], ["body", "points", 1, "step"],
        ["body", "points", 1, "value"],
    ]


@both_databases
def test_batches_over_1000_points_are_stored_whole(client: TestClient, run: dict[str, Any]) -> None:
    body = {"points": points("a", range(2345), 0.5) + [{"key": "b", "step": 0, "value": "NaN"}]}
    assert post(client, run["id"], body).json() == {"accepted": 2346, "inserted": 2346,
                                                    "conflicts": 0}
    got = series(client, run["id"], keys=["a", "b"], max_points=10_000)
    assert got["a"]["steps"] == list(range(2345)) and set(got["a"]["values"]) == {0.5}
    assert got["b"]["values"] == ["NaN"]
    again = {"points": points("a", range(2000, 3500))}
    assert post(client, run["id"], again).json() == {  # 2000..2344 were 0.5, now 1.0
        "accepted": 1500, "inserted": 1155, "conflicts": 345}

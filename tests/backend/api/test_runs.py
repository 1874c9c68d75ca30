from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from emaboard_server.app.core.config import Settings
from tests.backend.conftest import assert_error, points
from tests.utils.databases import both_databases


def test_create_run_returns_201_and_the_run(client: TestClient) -> None:
    response = client.post("/api/runs", json={"project": "p", "name": "r", "config": {"lr": 0.1}})
    assert response.status_code == 201
    run = response.json()
    assert run["project"] == "p" and run["name"] == "r"
    assert run["config"] == {"lr": 0.1}
    assert run["status"] == "running"
    assert run["last_step"] is None and run["best"] == {} and run["summary"] == {}
    assert run["created_at"] == run["last_seen_at"]


@both_databases
def test_create_again_resumes_same_id_sets_running_and_merges_config(client: TestClient) -> None:
    first = client.post("/api/runs", json={"project": "p", "name": "r", "config": {"a": 1}}).json()
    client.patch(f"/api/runs/{first['id']}", json={"status": "crashed"})
    again = client.post("/api/runs", json={"project": "p", "name": "r", "config": {"b": 2}})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["status"] == "running"
    assert again.json()["config"] == {"a": 1, "b": 2}


@both_databases
def test_resume_never_creates_a_new_run_under_the_first_free_name(client: TestClient) -> None:
    first = client.post("/api/runs", json={"project": "p", "name": "r"}).json()
    names = []
    for _ in range(3):
        again = client.post("/api/runs", json={"project": "p", "name": "r", "resume": "never",
                                               "config": {"b": 2}})
        assert again.status_code == 201 and again.json()["id"] != first["id"]
        assert again.json()["config"] == {"b": 2}
        names.append(again.json()["name"])
    assert names == ["r-2", "r-3", "r-4"]
    fresh = client.post("/api/runs", json={"project": "p", "name": "q", "resume": "never"})
    assert (fresh.status_code, fresh.json()["name"]) == (201, "q")
    long_name = "x" * 200
    client.post("/api/runs", json={"project": "p", "name": long_name})
    cut = client.post("/api/runs", json={"project": "p", "name": long_name, "resume": "never"})
    assert cut.json()["name"] == "x" * 198 + "-2"


def test_resume_must_continues_or_is_404_naming_the_remedy(client: TestClient) -> None:
    assert_error(client.post("/api/runs", json={"project": "p", "name": "r", "resume": "must"}),
                 404, "Run not found: resume='must' continues an existing run and p/r does not "
                 "exist; pass resume='allow' to create it")
    assert client.get("/api/runs").json() == []
    first = client.post("/api/runs", json={"project": "p", "name": "r"}).json()
    client.patch(f"/api/runs/{first['id']}", json={"status": "crashed"})
    again = client.post("/api/runs", json={"project": "p", "name": "r", "resume": "must"})
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["status"]) == (first["id"], "running")


def test_resume_modes_match_the_client_s(client: TestClient) -> None:
    from typing import get_args

    from ema_core.wire import RESUME_MODES
    from emaboard_server.app.schemas import ResumeMode

    assert get_args(ResumeMode) == RESUME_MODES
    response = client.post("/api/runs", json={"project": "p", "name": "r", "resume": "maybe"})
    assert response.status_code == 422


def test_same_name_in_other_project_is_another_run(client: TestClient) -> None:
    a = client.post("/api/runs", json={"project": "p1", "name": "r"}).json()
    b = client.post("/api/runs", json={"project": "p2", "name": "r"}).json()
    assert a["id"] != b["id"]


def test_list_runs_newest_first_and_filter_by_project(client: TestClient) -> None:
    ids = [
        client.post("/api/runs", json={"project": p, "name": n}).json()["id"]
        for p, n in [("a", "1"), ("b", "2"), ("a", "3")]
    ]
    assert [r["id"] for r in client.get("/api/runs").json()] == ids[::-1]
    assert [r["name"] for r in client.get("/api/runs", params={"project": "a"}).json()] == [
        "3",
        "1",
    ]
    assert client.get("/api/runs", params={"project": "none"}).json() == []


def test_read_run(client: TestClient, run: dict[str, Any]) -> None:
    assert client.get(f"/api/runs/{run['id']}").json() == run


def test_read_missing_run_is_404(client: TestClient) -> None:
    assert_error(client.get("/api/runs/999"), 404, "Run not found")


@both_databases
def test_patch_status_and_merge_summary(client: TestClient, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}"
    assert client.patch(url, json={"summary": {"a": 1}}).json()["summary"] == {"a": 1}
    updated = client.patch(url, json={"status": "finished", "summary": {"b": 2}}).json()
    assert updated["status"] == "finished"
    assert updated["summary"] == {"a": 1, "b": 2}
    assert client.get(url).json()["status"] == "finished"


def test_patch_bad_status_is_422_naming_the_field(client: TestClient, run: dict[str, Any]) -> None:
    error = assert_error(
        client.patch(f"/api/runs/{run['id']}", json={"status": "done"}),
        422,
        "Invalid field 'status': Input should be 'running', 'finished' or 'crashed'",
    )
    assert error["details"][0]["loc"] == ["body", "status"]


def test_patch_missing_run_is_404(client: TestClient) -> None:
    assert_error(client.patch("/api/runs/5", json={"status": "finished"}), 404, "Run not found")


def test_create_run_requires_project(client: TestClient) -> None:
    assert_error(
        client.post("/api/runs", json={"name": "r"}), 422, "Invalid field 'project': Field required"
    )


def test_create_run_rejects_unknown_fields(client: TestClient) -> None:
    assert_error(
        client.post("/api/runs", json={"project": "p", "name": "r", "x": 1}),
        422,
        "Invalid field 'x': Extra inputs are not permitted",
    )


@both_databases
def test_delete_run_removes_it_and_its_points(
    client: TestClient, run: dict[str, Any], settings: Settings
) -> None:
    url = f"/api/runs/{run['id']}"
    client.post(url + "/metrics", json={"points": points("a", range(5))})
    response = client.delete(url)
    assert response.status_code == 204 and response.content == b""
    engine = create_engine(settings.resolved_database_url())
    with engine.connect() as connection:
        for table in ("metric_point", "metric_series", "latest_metric"):
            assert connection.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar() == 0
    engine.dispose()
    assert_error(client.get(url), 404, "Run not found")
    assert_error(client.get(url + "/keys"), 404, "Run not found")
    again = client.post("/api/runs", json={"project": "demo", "name": "run-1"}).json()
    assert client.get(f"/api/runs/{again['id']}/keys").json() == []
    assert again["id"] != run["id"]  # ids are never reused: a stale client cannot hit it
    assert_error(client.get(url), 404, "Run not found")


def test_delete_missing_run_is_404(client: TestClient) -> None:
    assert_error(client.delete("/api/runs/77"), 404, "Run not found")


@both_databases
def test_last_step_and_last_seen_follow_ingest(client: TestClient, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}"
    client.post(url + "/metrics", json={"points": points("a", range(10, 20))})
    client.post(url + "/metrics", json={"points": points("b", range(0, 5))})
    updated = client.get(url).json()
    assert updated["last_step"] == 19
    assert updated["last_seen_at"] >= run["last_seen_at"]


@both_databases
def test_best_per_averager_from_eval_series(client: TestClient, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}"
    batch = [
        {"key": "eval/live/accuracy", "step": 1, "value": 0.5},
        {"key": "eval/live/accuracy", "step": 2, "value": 0.7},
        {"key": "eval/live/accuracy", "step": 3, "value": 0.6},
        {"key": "eval/ema_0.999/accuracy", "step": 2, "value": "NaN"},
        {"key": "eval/ema_0.999/accuracy", "step": 3, "value": 0.8},
        {"key": "eval/ema_0.999/loss", "step": 3, "value": 0.1},
        {"key": "train/loss", "step": 3, "value": 0.01},
    ]
    client.post(url + "/metrics", json={"points": batch})
    client.post(
        url + "/metrics",
        json={"points": [{"key": "eval/ema_0.999/accuracy", "step": 4, "value": 0.75}]},
    )
    assert client.get(url).json()["best"] == {
        "live": {"metric": "accuracy", "value": 0.7, "step": 2},
        "ema_0.999": {"metric": "accuracy", "value": 0.8, "step": 3},
    }
    client.patch(url, json={"summary": {"primary_metric": "loss"}})
    assert client.get(url).json()["best"] == {
        "ema_0.999": {"metric": "loss", "value": 0.1, "step": 3}
    }
    assert client.get("/api/runs").json()[0]["best"] == {
        "ema_0.999": {"metric": "loss", "value": 0.1, "step": 3}
    }


def test_primary_mode_from_summary_wins(client: TestClient, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}"
    batch = [
        {"key": "eval/swa/accuracy", "step": s, "value": v} for s, v in enumerate([0.3, 0.9, 0.1])
    ]
    client.post(url + "/metrics", json={"points": batch})
    assert client.get(url).json()["best"]["swa"]["value"] == 0.9
    client.patch(url, json={"summary": {"primary_metric": "accuracy", "primary_mode": "min"}})
    assert client.get(url).json()["best"] == {
        "swa": {"metric": "accuracy", "value": 0.1, "step": 2}
    }


def test_primary_mode_of_a_loss_is_min_whatever_its_case(
    client: TestClient, run: dict[str, Any]
) -> None:
    url = f"/api/runs/{run['id']}"
    batch = [{"key": "eval/swa/Loss", "step": s, "value": v} for s, v in enumerate([0.3, 0.1, 0.9])]
    batch += [{"key": "eval/swa/Top1_Error", "step": 5, "value": 0.4}]
    batch += [{"key": "eval/swa/Top1_Error", "step": 6, "value": 0.2}]
    client.post(url + "/metrics", json={"points": batch})
    assert client.get(url).json()["best"] == {"swa": {"metric": "Loss", "value": 0.1, "step": 1}}
    client.patch(url, json={"summary": {"primary_metric": "Top1_Error"}})
    assert client.get(url).json()["best"] == {
        "swa": {"metric": "Top1_Error", "value": 0.2, "step": 6}
    }


def test_best_reads_only_keys_of_the_eval_grammar(client: TestClient, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}"
    batch = [
        {"key": "eval/live/top1/acc", "step": 1, "value": 0.5},  # a metric may hold "/"
        {"key": "eval//top1/acc", "step": 1, "value": 0.9},  # no model: not an eval key
        {"key": "eval/swa/", "step": 1, "value": 0.9},  # no metric: not an eval key
    ]
    client.post(url + "/metrics", json={"points": batch})
    assert client.get(url).json()["best"] == {
        "live": {"metric": "top1/acc", "value": 0.5, "step": 1}
    }


def test_create_retries_once_after_a_unique_violation(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import IntegrityError

    from emaboard_server.app import crud

    real = crud.get_or_create_run
    calls = []

    def racing(session: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["name"])
        if len(calls) == 1:  # what a second server process on PostgreSQL could cause
            raise IntegrityError("INSERT INTO run", {}, Exception("unique violation"))
        return real(session, **kwargs)

    monkeypatch.setattr(crud, "get_or_create_run", racing)
    response = client.post("/api/runs", json={"project": "p", "name": "race"})
    assert response.status_code == 201 and calls == ["race", "race"]


def _no_bare_nan(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} stored")

    return json.loads(text, parse_constant=refuse)


@both_databases
def test_non_finite_floats_in_config_and_summary_travel_as_strings(
    client: TestClient, settings: Settings
) -> None:
    # Python clients post bare NaN/Infinity (json.dumps allows them); stored as they are,
    # they came back as null (SQLite) or failed the insert (PostgreSQL JSON has no NaN).
    body = '{"project": "p", "name": "r", "config": {"clip": Infinity, "x": [NaN, -Infinity]}}'
    response = client.post("/api/runs", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["config"] == {"clip": "Infinity", "x": ["NaN", "-Infinity"]}
    patched = client.patch(f"/api/runs/{run['id']}", content='{"summary": {"best": NaN}}',
                           headers={"content-type": "application/json"})
    assert patched.json()["summary"] == {"best": "NaN"}
    engine = create_engine(settings.resolved_database_url())
    with engine.connect() as connection:
        config, summary = connection.exec_driver_sql(
            "SELECT CAST(config AS TEXT), CAST(summary AS TEXT) FROM run").one()
    engine.dispose()
    assert _no_bare_nan(config) == {"clip": "Infinity", "x": ["NaN", "-Infinity"]}
    assert _no_bare_nan(summary) == {"best": "NaN"}

"""Run tags (issue 15, item 3): set at creation, added on resume, replaced by PATCH, filtered
on in GET /api/runs together with status and a name search."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from ema_core.wire import MAX_TAGS
from tests.backend.conftest import assert_error
from tests.utils.databases import both_databases


def create(client: TestClient, name: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/runs", json={"project": "p", "name": name, **body})
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


@both_databases
def test_tags_at_creation_sorted_without_repeats(client: TestClient) -> None:
    run = create(client, "a", tags=["bf16", "baseline", "bf16"])
    assert run["tags"] == ["baseline", "bf16"]
    assert client.get(f"/api/runs/{run['id']}").json()["tags"] == ["baseline", "bf16"]
    assert create(client, "b")["tags"] == []


@both_databases
def test_a_resume_adds_tags(client: TestClient) -> None:
    create(client, "a", tags=["baseline"])
    assert create(client, "a", tags=["resumed", "baseline"])["tags"] == ["baseline", "resumed"]
    assert create(client, "a")["tags"] == ["baseline", "resumed"]  # none given: kept


@both_databases
def test_patch_replaces_tags(client: TestClient) -> None:
    run = create(client, "a", tags=["x", "y"])
    response = client.patch(f"/api/runs/{run['id']}", json={"tags": ["z"]})
    assert response.json()["tags"] == ["z"]
    assert client.patch(f"/api/runs/{run['id']}", json={"status": "finished"}).json()["tags"] == [
        "z"]  # omitted: kept
    assert client.patch(f"/api/runs/{run['id']}", json={"tags": []}).json()["tags"] == []


@pytest.mark.parametrize(("tags", "message"), [
    (["a,b"], "Invalid field 'tags': Value error, Invalid tag 'a,b': a tag holds no comma or "
              "control character"),
    ([""], "Invalid field 'tags': Value error, Invalid tag '': expected 1 to 64 characters "
           "without spaces at either end"),
    (["x" * 65], "Invalid field 'tags': Value error, Invalid tag '" + "x" * 65 + "': expected 1 "
                 "to 64 characters without spaces at either end"),
    ([f"t{i}" for i in range(MAX_TAGS + 1)], "Invalid field 'tags': Value error, Too many tags: "
                                            "33 > 32"),
    ("solo", "Invalid field 'tags': Input should be a valid list"),
    ([1], "Invalid field 'tags.0': Input should be a valid string"),
])
def test_bad_tags_are_422_naming_the_tag(client: TestClient, tags: Any, message: str) -> None:
    assert_error(client.post("/api/runs", json={"project": "p", "name": "n", "tags": tags}),
                 422, message)
    run = create(client, "ok")
    assert_error(client.patch(f"/api/runs/{run['id']}", json={"tags": tags}), 422, message)
    assert client.get(f"/api/runs/{run['id']}").json()["tags"] == []  # nothing stored


@both_databases
def test_too_many_tags_after_a_resume_is_422_and_keeps_the_stored(client: TestClient) -> None:
    create(client, "a", tags=[f"t{i}" for i in range(MAX_TAGS)])
    assert_error(client.post("/api/runs", json={"project": "p", "name": "a", "tags": ["new"]}),
                 422, "Invalid field 'tags': Too many tags: 33 > 32")
    (run,) = client.get("/api/runs").json()
    assert len(run["tags"]) == MAX_TAGS and "new" not in run["tags"]


@both_databases
def test_list_filters_by_tags_status_and_name(client: TestClient) -> None:
    a = create(client, "resnet-lr0.1", tags=["baseline", "cifar"])
    b = create(client, "ResNet-lr0.2", tags=["cifar"])
    c = create(client, "vit_100%", tags=["baseline"])
    client.patch(f"/api/runs/{b['id']}", json={"status": "crashed"})

    def names(**params: Any) -> list[str]:
        response = client.get("/api/runs", params=params)
        assert response.status_code == 200, response.text
        return [run["name"] for run in response.json()]

    assert names(tag="baseline") == [c["name"], a["name"]]
    assert names(tag=["baseline", "cifar"]) == [a["name"]]  # every tag
    assert names(tag="nope") == []
    assert names(status="crashed") == [b["name"]]
    assert names(q="resnet") == [b["name"], a["name"]]  # case-insensitive
    assert names(q="100%") == [c["name"]]  # literal: % is no wildcard
    assert names(q="_") == [c["name"]]
    assert names(project="p", tag="cifar", status="running") == [a["name"]]
    assert_error(client.get("/api/runs", params={"status": "lost"}), 422,
                 "Invalid query parameter 'status': Input should be 'running', 'finished' or "
                 "'crashed'")


@both_databases
def test_deleting_a_run_deletes_its_tags(client: TestClient) -> None:
    run = create(client, "a", tags=["x"])
    client.delete(f"/api/runs/{run['id']}")
    assert create(client, "b", tags=["x"])["tags"] == ["x"]
    assert [r["name"] for r in client.get("/api/runs", params={"tag": "x"}).json()] == ["b"]

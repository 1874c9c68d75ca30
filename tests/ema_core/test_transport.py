"""ApiClient's answer handling, against an in-process httpx transport."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from ema_core.transport import ApiClient, RejectedError, RetryableError


def _client(handler) -> ApiClient:
    api = ApiClient("http://emaboard.test")
    api._http = httpx.Client(base_url=api.server, transport=httpx.MockTransport(handler))
    return api


def test_a_2xx_answer_that_is_not_json_is_a_retryable_error() -> None:
    # A misconfigured URL (a proxy's login page) must not raise a JSONDecodeError into
    # Monitor.finish() or kill a request path that only expects TransportError.
    api = _client(lambda request: httpx.Response(200, text="<html>login</html>"))
    message = (
        r"^PATCH /api/runs/3 answered 200 with a body that is not JSON \('<html>login</html>'\): "
        r"check that the server URL points at emaboard$"
    )
    with pytest.raises(RetryableError, match=message):
        api.set_status(3, "finished")
    api.close()


def test_json_answers_and_empty_bodies_are_returned() -> None:
    api = _client(lambda request: httpx.Response(200, json={"id": 7}))
    assert api.create_run("p", "r", {}) == (7, "r")
    api.close()
    empty = _client(lambda request: httpx.Response(204))
    empty.update_summary(7, {"primary_metric": "loss"})  # no body: no error
    empty.close()


def _old_server(bodies: list[dict]):
    """A server from before creation ids: the API's answer to an unknown body field."""

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        if "creation_id" in bodies[-1]:
            return httpx.Response(422, json={"error": {
                "status": 422, "message": "Invalid field 'creation_id': Extra inputs are not "
                "permitted"}})
        return httpx.Response(201, json={"id": 4, "name": bodies[-1]["name"]})

    return handle


def test_a_server_without_creation_ids_is_asked_again_without_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bodies: list[dict] = []
    api = _client(_old_server(bodies))
    with caplog.at_level(logging.WARNING, logger="ema_core.transport"):
        assert api.create_run("p", "r", {}, "never", creation_id="c" * 32) == (4, "r")
    api.close()
    assert [body.get("creation_id") for body in bodies] == ["c" * 32, None]
    assert "server http://emaboard.test predates creation ids (upgrade it)" in caplog.text


def test_a_refused_creation_id_value_is_not_retried_without_it() -> None:
    calls: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(422, json={"error": {"status": 422, "message": (
            "Invalid field 'creation_id': Value error, Invalid creation_id 'a b': ...")}})

    api = _client(refuse)
    with pytest.raises(RejectedError, match="Invalid creation_id 'a b'"):
        api.create_run("p", "r", {}, creation_id="a b")
    api.close()
    assert len(calls) == 1

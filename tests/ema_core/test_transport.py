"""ApiClient's answer handling, against an in-process httpx transport."""

from __future__ import annotations

import httpx
import pytest

from ema_core.transport import ApiClient, RetryableError


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

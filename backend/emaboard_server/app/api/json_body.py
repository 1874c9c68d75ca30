"""JSON request bodies: parsed off the event loop, strictly UTF-8, depth-bounded, 422 when bad.

FastAPI parses a JSON body with ``request.json()`` on the event loop and answers 400 "There
was an error parsing the body" to non-UTF-8 or too deeply nested input. Routes built with
:class:`JsonRoute` get a :class:`JsonRequest` instead (FastAPI's documented custom
``APIRoute`` / ``Request`` pattern), whose ``json()`` parses in a worker thread and raises a
422 ``Invalid JSON body: ...`` (the one error shape) for every kind of broken body.
The body itself is already capped in bytes by :mod:`.limits`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from ema_core.wire import MAX_JSON_DEPTH, json_depth

# Deepest nesting of a whole JSON body: a structural guard; the free-form objects inside a
# body (config, summary) are held to MAX_JSON_DEPTH by their own 422 naming the field.
MAX_BODY_DEPTH = 2 * MAX_JSON_DEPTH


def invalid_json(reason: str) -> HTTPException:
    """The 422 for a body that is not JSON (``Invalid JSON body: <reason>``)."""
    return HTTPException(422, f"Invalid JSON body: {reason}")


def parse_json(body: bytes, max_depth: int = MAX_BODY_DEPTH) -> Any:
    """Parse a request body as strict JSON (RFC 8259: UTF-8 text).

    Args:
        body: The raw body.
        max_depth: Deepest nesting accepted for the whole body.

    Returns:
        The parsed value.

    Raises:
        HTTPException: 422 ``Invalid JSON body: ...`` naming what is wrong (not UTF-8, a
            syntax error with its position, nested too deeply).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_json(f"not UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid_json(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise invalid_json(f"nested deeper than {max_depth} levels") from None
    except ValueError:  # the one other failure: an integer past Python's digit limit
        raise invalid_json(f"a number has more than {sys.get_int_max_str_digits()} digits") \
            from None
    if json_depth(value, max_depth) > max_depth:
        raise invalid_json(f"nested deeper than {max_depth} levels")
    return value


class JsonRequest(Request):
    """A request whose :meth:`json` parses with :func:`parse_json` in a worker thread."""

    async def json(self) -> Any:
        """The parsed body (cached); raises a 422 ``HTTPException`` when it is not JSON."""
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = await run_in_threadpool(parse_json, body)
        return self._json


class JsonRoute(APIRoute):
    """An ``APIRoute`` whose handler receives a :class:`JsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so that it parses bodies with :class:`JsonRequest`."""
        handler = super().get_route_handler()

        async def json_route_handler(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return json_route_handler

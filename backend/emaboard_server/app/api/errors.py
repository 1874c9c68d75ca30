"""One JSON error shape for every error: ``{"error": {"status", "message", "details"?}}``;
websockets refused are closed with an application close code (:mod:`.close_codes`) and a
reason."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError, WebSocketRequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Send

from ema_core.exceptions import InvalidDecayError
from emaboard_server.app.api.close_codes import WS_4422_INVALID_REQUEST
from emaboard_server.app.exceptions import (
    InvalidPosthocUpload,
    InvalidTags,
    NotFound,
    PosthocUnavailable,
    SnapshotConflict,
    StorageFull,
)
from emaboard_server.app.schemas import ObjectTooLarge
from emaboard_server.app.snapshot_files import InvalidSnapshot, SnapshotTooLarge

logger = logging.getLogger(__name__)

_PLACES = {"query": "query parameter", "path": "path parameter", "header": "header"}


def error_response(
    status: int, message: str, details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The error answer every route uses."""
    body: dict[str, Any] = {"status": status, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def refuse_websocket(receive: Receive, send: Send, code: int, reason: str) -> None:
    """Accept a websocket, then close it with ``code`` (:mod:`.close_codes`) and ``reason`` (a
    close before the accept would reach the client as a bare HTTP 403, without either)."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code, "reason": reason})


def describe(loc: Sequence[str | int], message: str) -> str:
    """A one-line message naming where validation failed.

    ``("body", "points", 3, "value")`` → ``Invalid point 3 field 'value': ...``;
    ``("query", "max_points")`` → ``Invalid query parameter 'max_points': ...``.
    """
    loc = list(loc)
    if loc[:1] == ["body"]:
        loc = loc[1:]
    if len(loc) >= 3 and loc[0] == "points" and isinstance(loc[1], int):
        return f"Invalid point {loc[1]} field {str(loc[2])!r}: {message}"
    if len(loc) == 2 and loc[0] == "points" and isinstance(loc[1], int):
        return f"Invalid point {loc[1]}: {message}"
    if loc and loc[0] in _PLACES and len(loc) > 1:
        return f"Invalid {_PLACES[str(loc[0])]} {str(loc[1])!r}: {message}"
    if not loc or isinstance(loc[0], int):
        return f"Invalid request body: {message}"
    return f"Invalid field {'.'.join(str(part) for part in loc)!r}: {message}"


MAX_DETAILS = 20


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as ``[{"loc": [...], "message": ...}]``, the first 20 at most
    (a 50,000-point batch of bad points must not produce a larger answer than itself)."""
    return [{"loc": list(err["loc"]), "message": str(err["msg"])} for err in errors[:MAX_DETAILS]]


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, str(exc.detail), headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    details = validation_details(exc.errors())
    if not details:
        return error_response(422, "Invalid request")
    return error_response(422, describe(details[0]["loc"], str(details[0]["message"])), details)


# Domain errors (emaboard_server.app.exceptions) and the answers they get.
DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    NotFound: (404, "{exc}"),
    SnapshotConflict: (409, "{exc}"),
    PosthocUnavailable: (409, "{exc}"),
    InvalidPosthocUpload: (400, "{exc}"),
    InvalidDecayError: (422, "{exc}"),
    InvalidSnapshot: (400, "File is not a valid safetensors file: {exc}"),
    SnapshotTooLarge: (413, "Upload too large: {exc}"),
    ObjectTooLarge: (422, "{exc}"),
    StorageFull: (507, "{exc}"),
    InvalidTags: (422, "Invalid field 'tags': {exc}"),
}


def domain_error_response(exc: Exception) -> JSONResponse:
    """The answer to a domain error (:data:`DOMAIN_ERRORS`; its most specific class wins)."""
    for cls in type(exc).__mro__:
        if cls in DOMAIN_ERRORS:
            status, template = DOMAIN_ERRORS[cls]
            return error_response(status, template.format(exc=exc))
    raise TypeError(f"{type(exc).__name__} is not a domain error")


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    return domain_error_response(exc)


async def _websocket_validation_error(
    websocket: WebSocket, exc: WebSocketRequestValidationError
) -> None:
    """Accept, then close with 4422 and the first problem (FastAPI's default closes with
    1008 before accepting, which reaches a browser as a bare HTTP 403)."""
    details = validation_details(exc.errors())
    reason = describe(details[0]["loc"], details[0]["message"]) if details else "Invalid request"
    await websocket.accept()
    await websocket.close(code=WS_4422_INVALID_REQUEST,
                          reason=reason.encode()[:123].decode(errors="ignore"))  # RFC 6455


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through :func:`error_response`, domain errors included."""
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(WebSocketRequestValidationError,
                              _websocket_validation_error)  # type: ignore[arg-type]
    for cls in DOMAIN_ERRORS:
        app.add_exception_handler(cls, _domain_error)
    app.add_exception_handler(Exception, _server_error)

"""The token check on ``/api``, done before routing so no body is read without the token."""

from __future__ import annotations

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.app.api.errors import error_response
from backend.app.core.security import INVALID_TOKEN, presented_token, token_ok

OPEN_PATHS = frozenset({"/api/health", "/api/health/"})


def needs_token(path: str) -> bool:
    """True for every ``/api`` path except the health check."""
    return (path == "/api" or path.startswith("/api/")) and path not in OPEN_PATHS


class TokenMiddleware:
    """Answer 401 (the API's error shape) to an ``/api`` request without the server's token.

    A middleware, not a route dependency: FastAPI reads and parses a request's body (a
    multipart upload is spooled whole) before it runs dependencies, so a dependency would
    let a client without the token make the server receive up to ``max_upload_bytes``.
    Websockets check the token themselves (they close with 1008 instead).
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is not None and scope["type"] == "http" and needs_token(scope["path"]):
            presented = presented_token(Headers(scope=scope),
                                        QueryParams(scope.get("query_string", b"")))
            if not token_ok(self.token, presented):
                await error_response(401, INVALID_TOKEN)(scope, receive, send)
                return
        await self.app(scope, receive, send)

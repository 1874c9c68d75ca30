"""Checks done before routing: the token on ``/api`` (so no body is read without it) and the
refusal of cross-site browser requests."""

from __future__ import annotations

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from emaboard_server.app.api.close_codes import WS_4403_CROSS_ORIGIN
from emaboard_server.app.api.errors import error_response, refuse_websocket
from emaboard_server.app.core.security import INVALID_TOKEN, presented_token, token_ok

OPEN_PATHS = frozenset({"/api/health", "/api/health/"})


def needs_token(path: str) -> bool:
    """True for every ``/api`` path except the health check."""
    return (path == "/api" or path.startswith("/api/")) and path not in OPEN_PATHS


class TokenMiddleware:
    """Answer 401 (the API's error shape) to an ``/api`` request without the server's token.

    A middleware, not a route dependency: FastAPI reads and parses a request's body (a
    multipart upload is spooled whole) before it runs dependencies, so a dependency would
    let a client without the token make the server receive up to ``max_upload_bytes``.
    Websockets check the token themselves (they close with 4401 instead).
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


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CROSS_ORIGIN = "Cross-origin request refused: open the dashboard from this server's own address"


def _origin_netloc(origin: str) -> str:
    """``host[:port]`` of an ``Origin`` header value (``scheme://host[:port]``)."""
    return origin.split("://", 1)[-1].rstrip("/").lower()


class SameOriginMiddleware:
    """Refuse state-changing requests and websockets that a *browser* sends from another site.

    Without a token the server trusts anything that can reach it, and any web page the
    user visits can POST to ``http://127.0.0.1:8000`` (a simple ``text/plain`` request
    needs no CORS preflight) or open a websocket to it. Browsers always send ``Origin`` on
    those requests; when it names another host than the request's ``Host``, the request
    gets 403 (the API's error shape) and a websocket is accepted and closed with 4403 and
    the reason (closing before accepting reaches the client as a bare HTTP 403).
    Clients that are not browsers (the Monitor, curl) send no ``Origin`` and pass.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        guarded = kind == "websocket" or (
            kind == "http" and scope["method"] not in SAFE_METHODS
            and scope["path"].startswith("/api")
        )
        if guarded:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and _origin_netloc(origin) != headers.get("host", "").lower():
                if kind == "websocket":
                    await refuse_websocket(receive, send, WS_4403_CROSS_ORIGIN, CROSS_ORIGIN)
                else:
                    await error_response(403, CROSS_ORIGIN)(scope, receive, send)
                return
        await self.app(scope, receive, send)

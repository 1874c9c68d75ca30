"""``OPTIONS``: 204 with the path's ``Allow`` methods (RFC 9110 §9.3.7), never CORS.

Without this an ``OPTIONS`` request fell through to the dashboard's static files, which
answered 405 ``Allow: GET, HEAD`` for every path, ``POST /api/runs`` included. No
``Access-Control-*`` header is ever sent, so a browser's cross-site preflight still fails:
other sites stay unable to send JSON or authenticated requests to the server.

The methods of each ``/api`` path are read from the app's OpenAPI schema (every API route
is in it); any other path is the dashboard's (``GET``, ``HEAD``).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from emaboard_server.app.api.errors import error_response

STATIC_METHODS = frozenset({"GET", "HEAD"})
_PARAM = re.compile(r"\{[^/{}]+\}")


Table = list[tuple[re.Pattern[str], int, frozenset[str]]]


def path_methods(openapi: dict[str, Any]) -> Table:
    """(path pattern, number of parameters, methods) for every path of an OpenAPI schema;
    ``{id}`` matches one path segment."""
    table = []
    for template, operations in openapi.get("paths", {}).items():
        methods = frozenset(method.upper() for method in operations)
        pattern = re.compile("[^/]+".join(re.escape(part) for part in _PARAM.split(template)))
        table.append((pattern, len(_PARAM.findall(template)), methods))
    return table


def allowed_methods(table: Table, path: str) -> set[str]:
    """The methods of the most specific paths that match (``.../snapshots/best`` is not
    ``.../snapshots/{snapshot_id}``); empty when none does."""
    matches = [(params, methods) for pattern, params, methods in table if pattern.fullmatch(path)]
    fewest = min((params for params, _ in matches), default=0)
    return {method for params, methods in matches if params == fewest for method in methods}


class OptionsMiddleware:
    """Answer ``OPTIONS`` for the app's own paths (404 for an unknown ``/api`` path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._table: Table | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        if self._table is None:
            self._table = path_methods(scope["app"].openapi())
        path = scope["path"]
        methods = allowed_methods(self._table, path)
        if not methods and (path == "/api" or path.startswith(("/api/", "/ws/"))):
            await error_response(404, "Not Found")(scope, receive, send)
            return
        allow = ", ".join(sorted(methods or STATIC_METHODS) + ["OPTIONS"])
        await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)

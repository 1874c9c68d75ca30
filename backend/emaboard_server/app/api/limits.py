"""Request body caps, answered with the API's error shape before more is read.

A snapshot upload (``POST /api/runs/{id}/snapshots``) may carry ``max_upload_bytes`` plus
1 MiB of multipart framing; every other body at most ``max_body_bytes``. A body that
announces more (``Content-Length``) is refused unread; one that streams past the cap is
refused as soon as it does, so a request never makes the server hold more than its cap.
A body refused by its length is answered with ``Connection: close``, so the server stops
receiving it at once (httpx and urllib3 read the 413 after their write fails); the rest of
a body refused while streaming is discarded by uvicorn as it arrives (no memory held).
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emaboard_server.app.api.errors import error_response
from emaboard_server.app.core.config import Settings

MULTIPART_OVERHEAD_BYTES = 1 << 20
_UPLOAD_PATH = re.compile(r"/api/runs/[^/]+/snapshots/?")


def too_large_message(limit: int, upload: bool) -> str:
    """The 413 message for a body over ``limit`` bytes."""
    setting = "max_upload_bytes + 1 MiB for multipart framing" if upload else "max_body_bytes"
    return f"Request body too large: the limit is {limit} bytes ({setting})"


def is_upload(scope: Scope) -> bool:
    """True for ``POST /api/runs/{id}/snapshots`` (the only route that takes a file)."""
    return scope["method"] == "POST" and _UPLOAD_PATH.fullmatch(scope["path"]) is not None


class BodyLimitMiddleware:
    """Refuse bodies over the route's cap: by ``Content-Length`` up front, else while streaming.

    A streamed body that crosses the cap raises a 413 ``HTTPException`` from ``receive``,
    which the route's exception handling turns into the error shape.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
        self.body_limit = settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = is_upload(scope)
        limit = self.upload_limit if upload else self.body_limit
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response = error_response(413, too_large_message(limit, upload),
                                      headers={"Connection": "close"})
            await response(scope, receive, send)
            return
        total = 0

        async def counting_receive() -> Message:
            nonlocal total
            message = await receive()
            total += len(message.get("body", b""))
            if total > limit:
                raise HTTPException(413, too_large_message(limit, upload))
            return message

        await self.app(scope, counting_receive, send)

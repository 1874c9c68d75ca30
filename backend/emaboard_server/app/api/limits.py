"""Request body cap (``max_upload_bytes``), answered with the API's error shape."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emaboard_server.app.api.errors import error_response


def too_large_message(limit: int) -> str:
    """The 413 message for bodies over ``limit`` bytes (``max_upload_bytes`` + 1 MiB)."""
    return (f"Request body too large: the limit is {limit} bytes "
            "(max_upload_bytes + 1 MiB for multipart framing)")


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes: by ``Content-Length`` up front, else while streaming.

    A streamed body that crosses the limit raises a 413 ``HTTPException`` from ``receive``,
    which the route's exception handling turns into the error shape.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = error_response(413, too_large_message(self.limit))
            await response(scope, receive, send)
            return
        total = 0

        async def counting_receive() -> Message:
            nonlocal total
            message = await receive()
            total += len(message.get("body", b""))
            if total > self.limit:
                raise HTTPException(413, too_large_message(self.limit))
            return message

        await self.app(scope, counting_receive, send)

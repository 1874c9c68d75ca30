"""Token checks: ``Authorization: Bearer <token>`` or a ``token`` query parameter."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers, QueryParams

INVALID_TOKEN = "Invalid or missing token"


def presented_token(headers: Headers, query: QueryParams) -> str | None:
    """The token a request carries: the Bearer header first, else ``?token=``."""
    auth = headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return query.get("token")


def token_ok(expected: str | None, presented: str | None) -> bool:
    """True when no token is configured, or ``presented`` equals it (constant-time compare)."""
    if expected is None:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())

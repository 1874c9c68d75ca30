"""Websocket close codes of the API: application codes (RFC 6455 §7.4.2 gives 4000-4999 to
the application), each 4000 + the HTTP status that a request refused for the same reason
gets. A client branches on the code; the close reason is prose for people.

The dashboard maps them in ``frontend/js/close_codes.js``; a test compares the two.
"""

from __future__ import annotations

WS_4400_INVALID_HOST = 4400
"""``Host`` is not in ``allowed_hosts`` (DNS rebinding): not retried."""

WS_4401_INVALID_TOKEN = 4401
"""The token is missing or wrong: ask for it, then reconnect."""

WS_4403_CROSS_ORIGIN = 4403
"""A browser page of another site opened the socket: not retried."""

WS_4404_RUN_NOT_FOUND = 4404
"""``/ws/runs/{run_id}`` names no run (never existed, or deleted): not retried."""

WS_4422_INVALID_REQUEST = 4422
"""The socket's path or query does not validate (e.g. a run id out of range): not retried."""

CLOSE_CODES = {
    "INVALID_HOST": WS_4400_INVALID_HOST,
    "INVALID_TOKEN": WS_4401_INVALID_TOKEN,
    "CROSS_ORIGIN": WS_4403_CROSS_ORIGIN,
    "RUN_NOT_FOUND": WS_4404_RUN_NOT_FOUND,
    "INVALID_REQUEST": WS_4422_INVALID_REQUEST,
}
"""Every code by name, as ``close_codes.js`` exports them."""

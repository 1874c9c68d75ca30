"""``Host`` header validation against DNS rebinding (Django's ``ALLOWED_HOSTS``, Starlette's
``TrustedHostMiddleware``).

A page on ``http://evil.example:8000`` whose name the attacker re-points at 127.0.0.1 talks
to a local server as a *same-origin* page: the Origin check (:mod:`.auth`) cannot tell, and
without a token it could read, write and delete everything. Its requests still carry
``Host: evil.example:8000``, so every request and websocket whose Host names no allowed
host is refused. Allowed are the names in ``allowed_hosts`` (``*.example.com`` matches
subdomains, ``*`` matches anything), the address the server is bound to, and any IP
address: a page can only send an IP address as Host when it was loaded from that address,
that is from this server itself.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from emaboard_server.app.api.close_codes import WS_4400_INVALID_HOST
from emaboard_server.app.api.errors import error_response, refuse_websocket

WILDCARD_BIND = frozenset({"", "0.0.0.0", "::"})
INVALID_HOST_REASON = "Invalid Host header: not in allowed_hosts"  # ≤ 123 bytes (close reason)


# A Host header (RFC 9110 §7.2): a name or IPv4 address, or an IPv6 address in brackets,
# then an optional port. Anything else (userinfo, text after "]", spaces) is refused.
_HOST = re.compile(r"(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::[0-9]{1,5})?")


def host_name(host_header: str) -> str | None:
    """The host part of a ``Host`` header, lower case, without port, IPv6 brackets or a
    trailing dot; None when the header is not of that form."""
    match = _HOST.fullmatch(host_header.strip())
    if match is None:
        return None
    return (match["ip6"] or match["name"]).lower().rstrip(".")


def is_ip_address(host: str) -> bool:
    """True when ``host`` (without brackets or port) is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` names a server answers to.

    Args:
        allowed_hosts: Names (``localhost``), ``*.example.com`` patterns, or ``*``.
        bind_host: The address the server listens on; allowed unless it is a wildcard.
    """

    def __init__(self, allowed_hosts: Iterable[str], bind_host: str = "") -> None:
        names = {host.strip().lower().rstrip(".") for host in allowed_hosts if host.strip()}
        names = {name[1:-1] if name.startswith("[") else name for name in names}
        if bind_host not in WILDCARD_BIND:
            names.add(bind_host.lower().strip("[]"))
        self.allow_any = "*" in names
        self.suffixes = tuple(name[1:] for name in names if name.startswith("*."))
        self.names = frozenset(name for name in names if not name.startswith("*"))

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header may be served."""
        if self.allow_any:
            return True
        host = host_name(host_header) if host_header else None
        if not host:
            return False
        return host in self.names or is_ip_address(host) or host.endswith(self.suffixes)


def invalid_host_message(host_header: str | None) -> str:
    """The 400 message naming the refused Host and the setting that would allow it."""
    shown = host_header if host_header else "(none)"
    return (f"Invalid Host header {shown!r}: not in allowed_hosts; if this server is reached "
            f"under that name, add it to EMABOARD_ALLOWED_HOSTS")


class AllowedHostsMiddleware:
    """Answer 400 (the API's error shape) to a request whose ``Host`` is not allowed; close
    such a websocket with 4400 right after accepting it."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = Headers(scope=scope).get("host")
            if not self.policy.allows(host):
                if scope["type"] == "websocket":
                    await refuse_websocket(receive, send, WS_4400_INVALID_HOST,
                                           INVALID_HOST_REASON)
                else:
                    await error_response(400, invalid_host_message(host))(scope, receive, send)
                return
        await self.app(scope, receive, send)


"""A Monitor's settings, checked and resolved before anything starts (private).

:func:`resolve_settings` checks the names, ``resume``, ``finish_timeout_s`` and the
sender's bounds (:class:`~ema_core._sender_config.SenderConfig`), and resolves the server
and the token: an explicit argument wins, else ``$EMABOARD_SERVER`` (else the local
default) and ``$EMABOARD_TOKEN``; an empty variable counts as unset. The run directory's
default (``$EMABOARD_DIR``) is :func:`ema_core.client.default_run_dir`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ema_core._sender_config import SenderConfig, check_positive
from ema_core.wire import RESUME_MODES

MAX_NAME_LENGTH = 200  # of a project or run name, as the server's schema


@dataclass(frozen=True)
class MonitorSettings:
    """Where and how a Monitor streams; every field checked."""

    server: str
    token: str | None
    sender: SenderConfig


def resolve_settings(
    project: Any, run: Any, server: str | None, token: str | None, *, resume: Any,
    finish_timeout_s: Any, default_server: str, **sender: Any,
) -> MonitorSettings:
    """Check the Monitor's arguments in its documented order; resolve server and token.

    Args:
        sender: the :class:`SenderConfig` fields.

    Raises:
        ValueError: an empty or over-long name, an unknown ``resume``, a non-positive
            ``finish_timeout_s``, a bad sender bound.
    """
    for what, value in (("project", project), ("run", run)):
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
            raise ValueError(
                f"Invalid {what} {value!r}: expected a non-empty string of at most "
                f"{MAX_NAME_LENGTH} characters"
            )
    if resume not in RESUME_MODES:
        raise ValueError(f"Invalid resume {resume!r}: expected one of {list(RESUME_MODES)}")
    check_positive("finish_timeout_s", finish_timeout_s)
    server = server if server is not None else (
        os.environ.get("EMABOARD_SERVER") or default_server)
    token = token if token is not None else (os.environ.get("EMABOARD_TOKEN") or None)
    return MonitorSettings(server=server, token=token, sender=SenderConfig(**sender))

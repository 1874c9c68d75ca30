"""Out-of-space errors of every storage layer, recognised where writes happen, so that a
full disk is answered 507 naming what is full, not 500.

What runs out of space raises differently: a file write ``OSError`` (``ENOSPC``, or
``EDQUOT`` over a quota), SQLite ``sqlite3.OperationalError`` with ``SQLITE_FULL`` ("database
or disk is full"), PostgreSQL SQLSTATE ``53100`` (``disk_full``: "could not extend file ...:
No space left on device"); SQLAlchemy wraps the last two (``.orig``).
"""

from __future__ import annotations

import errno
import functools
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from emaboard_server.app.exceptions import StorageFull
from emaboard_server.app.state import AppState

DISK_FULL_SQLSTATE = "53100"
_FILE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
F = TypeVar("F", bound=Callable[..., Any])


def out_of_space(exc: BaseException) -> str | None:
    """``"file"`` or ``"database"`` when ``exc`` or an error it wraps or came from is an
    out-of-space error, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error):
            if getattr(current, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                return "database"
        elif getattr(current, "sqlstate", None) == DISK_FULL_SQLSTATE:
            return "database"
        elif isinstance(current, OSError) and current.errno in _FILE_ERRNOS:
            return "file"
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else (
            current.__cause__ or current.__context__)
    return None


def place(state: AppState, kind: str) -> str:
    """What a user would free space on: the database, or the data directory."""
    if kind == "database":
        url = state.db.engine.url
        if state.db.is_sqlite:
            return f"the database {url.database}"
        return f"the PostgreSQL database {url.render_as_string(hide_password=True)}"
    return f"the data directory {state.settings.data_dir.resolve()}"


def guard_storage(write: F) -> F:
    """Turn an out-of-space error of ``write(state, ...)`` into :class:`StorageFull`."""

    @functools.wraps(write)
    def guarded(state: AppState, *args: Any, **kwargs: Any) -> Any:
        try:
            return write(state, *args, **kwargs)
        except Exception as exc:
            kind = out_of_space(exc)
            if kind is None:
                raise
            raise StorageFull(place(state, kind)) from exc

    return guarded  # type: ignore[return-value]

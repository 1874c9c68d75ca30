"""SQL text with the DBAPI's own placeholders, for statements run through the DBAPI.

Statements on the ingest and read paths are written once with ``{n}`` for n positional
placeholders and rendered for the connection's driver (``?`` for sqlite3, ``%s`` for
psycopg), once per statement text.
"""

from __future__ import annotations

import functools

from sqlalchemy import Connection

_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def sql_for(connection: Connection, template: str) -> str:
    """``template`` with ``{n}`` replaced by n positional placeholders of the DBAPI's style."""
    return render(connection.dialect.paramstyle, template)


@functools.lru_cache(maxsize=32)
def render(style: str, template: str) -> str:
    """``template`` with ``{1}``, ``{2}``, ``{4}`` and ``{9}`` replaced by that many
    placeholders of the DBAPI paramstyle ``style``.

    Raises:
        NotImplementedError: Another paramstyle than qmark, format or pyformat.
    """
    mark = _PLACEHOLDERS.get(style)
    if mark is None:
        raise NotImplementedError(
            f"Unsupported DBAPI paramstyle {style!r}: expected qmark, format or pyformat"
        )
    for n in (1, 2, 4, 9):
        template = template.replace(f"{{{n}}}", ", ".join([mark] * n))
    return template

"""What ``emaboard serve`` checks before it says "serving": the data directory, the database
(connected and upgraded), the listening socket, the number of processes.

Each failure is a :class:`StartupError` whose message is one line naming the value and the
remedy; ``emaboard serve`` prints it and exits non-zero, with no traceback.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import tempfile
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from emaboard_server.app.core.config import Settings
from emaboard_server.app.core.db import Database, database_url, upgrade_database


class StartupError(RuntimeError):
    """The server cannot start; the message says why and what to do."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an error's message, without SQLAlchemy's decorations."""
    text = str(getattr(exc, "orig", None) or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def check_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` if needed and write a file into it.

    Raises:
        StartupError: It cannot be created or written.
    """
    path = data_dir.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StartupError(
            f"Cannot write to the data directory {path}: {exc.strerror or exc}. Choose a "
            "writable directory with --data-dir (or EMABOARD_DATA_DIR), or fix its "
            "permissions") from None


def check_workers(settings: Settings) -> None:
    """Refuse more than one process (or live fan-out) on SQLite.

    Raises:
        StartupError: ``workers`` > 1 or ``live_fanout`` with a SQLite database.
    """
    if not settings.fanout_enabled():
        return
    url = database_url(settings.resolved_database_url())
    if url.get_backend_name() == "sqlite":
        what = (f"--workers {settings.workers}" if settings.workers > 1
                else "EMABOARD_LIVE_FANOUT=true")
        raise StartupError(
            f"{what} needs PostgreSQL: with SQLite the processes would queue on the "
            "database's single write lock and could not tell each other about new points. "
            "Pass --database-url postgresql://user:password@host/database, or run one "
            "process (--workers 1)")


def check_database(settings: Settings) -> None:
    """Connect to the database and upgrade its schema (``alembic upgrade head``).

    Raises:
        StartupError: An unsupported URL, a missing driver, an unreachable database or a
            failed migration, naming the URL (without its password) and the remedy.
    """
    url = settings.resolved_database_url()
    try:
        shown = database_url(url).render_as_string(hide_password=True)
        db = Database(url)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    except ModuleNotFoundError as exc:
        raise StartupError(f"The database {url.split(':', 1)[0]} needs the {exc.name} module: "
                           "pip install 'emaboard[postgres]'") from None
    except OSError as exc:  # the SQLite file's folder could not be created
        raise StartupError(f"Cannot use the database {shown}: {exc.strerror or exc} "
                           f"({exc.filename}). Choose another --database-url or "
                           "--data-dir") from None
    try:
        upgrade_database(db.engine, settings.data_dir)
    except (SQLAlchemyError, OSError) as exc:
        if db.is_sqlite:
            remedy = (f"Check that {Path(db.engine.url.database or '').parent} is writable "
                      "and has space, or choose another --data-dir / --database-url")
        else:
            remedy = ("Check that PostgreSQL is running and reachable there and that the "
                      "URL (--database-url or EMABOARD_DATABASE_URL) names an existing "
                      "database, user and password")
        raise StartupError(f"Cannot use the database {shown}: {first_line(exc)}. {remedy}") \
            from None
    finally:
        db.dispose()


_BIND_REMEDIES = {
    errno.EADDRINUSE: "another server is probably listening there: stop it, or pass --port "
                      "with a free port",
    errno.EACCES: "ports below 1024 need privileges: pass --port 8000 (or another port "
                  "above 1023)",
    errno.EADDRNOTAVAIL: "this machine has no such address: pass --host 127.0.0.1 (this "
                         "machine only) or --host 0.0.0.0 (every interface)",
}


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket the server (all its processes) will accept on.

    Raises:
        StartupError: ``host:port`` cannot be bound (in use, privileged, unknown address).
    """
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise StartupError(f"Cannot listen on {shown}: unknown host ({exc.strerror}). Pass "
                           "--host with an address of this machine") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        remedy = _BIND_REMEDIES.get(exc.errno or 0, "pass --host/--port with an address and "
                                    "a free port of this machine")
        raise StartupError(f"Cannot listen on {shown}: {exc.strerror or exc}; {remedy}") \
            from None
    sock.set_inheritable(True)  # the worker processes accept on it
    return sock


def preflight(settings: Settings) -> socket.socket:
    """Every check, in the order a user would fix them; return the bound socket.

    Raises:
        StartupError: The first check that fails.
    """
    check_workers(settings)
    check_data_dir(settings.data_dir)
    check_database(settings)
    return bind_socket(settings.host, settings.port)

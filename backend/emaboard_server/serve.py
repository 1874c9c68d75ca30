"""``emaboard serve``: check, then run the server with uvicorn (one or several processes);
Ctrl-C shuts it down cleanly.

Before it prints "serving", the command checks what a running server needs
(:mod:`emaboard_server.app.core.preflight`): a writable data directory, a reachable database
at the current schema, a port it can listen on, and PostgreSQL when ``--workers`` > 1. A
failed check prints one line naming the value and the remedy and exits with status 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emaboard_server.app.core.config import Settings

logger = logging.getLogger(__name__)

FLAGS = ("host", "port", "data_dir", "database_url", "workers")
APP_FACTORY = "emaboard_server.app.main:create_app"  # imported by each worker process
STARTUP_FAILED = 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` and its flags (each overrides its ``EMABOARD_*`` variable)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the emaboard server (API, websockets, dashboard)",
        description="Run the emaboard server. Flags override EMABOARD_* environment variables.",
    )
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8000; 0: any free port)")
    parser.add_argument("--data-dir", help="directory for the database and snapshots "
                        "(default ./emaboard-data)")
    parser.add_argument("--database-url", help="sqlite:///... or postgresql://user:pass@host/db "
                        "(default: SQLite in data-dir)")
    parser.add_argument("--workers", type=int, help="server processes sharing the port "
                        "(default 1; more need PostgreSQL)")
    parser.set_defaults(func=run)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """``Settings`` from the environment, with every flag that was given taking precedence."""
    from emaboard_server.app.core.config import Settings

    return Settings(**_overrides(args))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: value for name in FLAGS if (value := getattr(args, name, None)) is not None}


def _fail(message: str) -> int:
    sys.stderr.write(f"emaboard serve: error: {message}\n")
    return STARTUP_FAILED


def run(args: argparse.Namespace) -> int:
    """Check, then serve until Ctrl-C; return the exit code (1: it could not start)."""
    from emaboard_server.cli import require_extras

    if not require_extras("serve", "server"):
        return 2
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are noise here
    from pydantic import ValidationError

    from emaboard_server.app.core.preflight import StartupError, preflight

    try:
        settings = settings_from_args(args)
        sock = preflight(settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "?"
        return _fail(f"Invalid setting {name} (--{name.replace('_', '-')} or "
                     f"EMABOARD_{name.upper()}): {error['msg']}")
    except StartupError as exc:
        return _fail(str(exc))
    port = sock.getsockname()[1]
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    processes = f", {settings.workers} processes" if settings.workers > 1 else ""
    sys.stdout.write(f"emaboard serving http://{shown_host}:{port}/ "
                     f"(data in {settings.data_dir.resolve()}{processes}); Ctrl-C to stop\n")
    sys.stdout.flush()
    if settings.workers > 1:
        return _serve_processes(args, settings, sock)
    return _serve(settings, sock)


def _uvicorn_options() -> dict[str, Any]:
    return {"log_level": "warning", "ws_per_message_deflate": False,
            "timeout_graceful_shutdown": 5, "access_log": False}


def _serve(settings: Settings, sock: socket.socket) -> int:
    import uvicorn

    from emaboard_server.app.main import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), **_uvicorn_options()))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        logger.info("emaboard server stopped")
    return 0 if server.started else _fail("the server stopped while starting (see above)")


def _serve_processes(args: argparse.Namespace, settings: Settings, sock: socket.socket) -> int:
    """``settings.workers`` processes accepting on ``sock``, each building the app from the
    environment (the flags are passed on as ``EMABOARD_*`` variables); uvicorn's supervisor
    replaces a process that dies and stops them all on Ctrl-C or SIGTERM."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    for name, value in _overrides(args).items():
        os.environ[f"EMABOARD_{name.upper()}"] = str(value)
    config = uvicorn.Config(APP_FACTORY, factory=True, workers=settings.workers,
                            **_uvicorn_options())
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILED_UVICORN for process in supervisor.processes):
        return _fail("a server process could not start (see above)")
    return 0


STARTUP_FAILED_UVICORN = 3  # uvicorn's exit status of a worker whose startup failed

"""``emaboard serve``: run the server with uvicorn; Ctrl-C shuts it down cleanly."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emaboard_server.app.core.config import Settings

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``serve`` and its flags (each overrides its ``EMABOARD_*`` variable)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the emaboard server (API, websockets, dashboard)",
        description="Run the emaboard server. Flags override EMABOARD_* environment variables.",
    )
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8000)")
    parser.add_argument("--data-dir", help="directory for the database and snapshots "
                        "(default ./emaboard-data)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in data-dir)")
    parser.set_defaults(func=run)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """``Settings`` from the environment, with every flag that was given taking precedence."""
    from emaboard_server.app.core.config import Settings

    overrides = {name: value for name in ("host", "port", "data_dir", "database_url")
                 if (value := getattr(args, name, None)) is not None}
    return Settings(**overrides)


def run(args: argparse.Namespace) -> int:
    """Start uvicorn with the app built from settings + flags; return the exit code."""
    from emaboard_server.cli import require_extras

    if not require_extras("serve", "server"):
        return 2
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines are noise here
    import uvicorn

    from emaboard_server.app.main import create_app

    settings = settings_from_args(args)
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning",
        ws_per_message_deflate=False, timeout_graceful_shutdown=5, access_log=False,
    )
    server = uvicorn.Server(config)
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    sys.stdout.write(f"emaboard serving http://{shown_host}:{settings.port}/ "
                     f"(data in {settings.data_dir.resolve()}); Ctrl-C to stop\n")
    sys.stdout.flush()
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        logger.info("emaboard server stopped")
    return 0

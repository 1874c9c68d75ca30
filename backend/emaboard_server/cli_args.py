"""Command-line options that several ``emaboard`` commands share."""

from __future__ import annotations

import argparse
import os

DEFAULT_SERVER = "http://127.0.0.1:8000"  # as ema_core.client.DEFAULT_SERVER


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--server`` (default ``$EMABOARD_SERVER``, else :data:`DEFAULT_SERVER`) and
    ``--token`` (default ``$EMABOARD_TOKEN``), as the Monitor reads them."""
    parser.add_argument("--server", default=os.environ.get("EMABOARD_SERVER", DEFAULT_SERVER),
                        help=f"server base URL (default $EMABOARD_SERVER or {DEFAULT_SERVER})")
    parser.add_argument("--token", default=os.environ.get("EMABOARD_TOKEN"),
                        help="bearer token (default $EMABOARD_TOKEN)")

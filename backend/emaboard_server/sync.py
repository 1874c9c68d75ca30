"""``emaboard sync DIR``: upload what a training run left in its local spool.

A Monitor that could not reach the server (or ran out of time in ``finish()``) leaves
points and snapshot files in ``<run dir>/spool.sqlite``; this command sends them,
idempotently, and sets the run's final status. All the work is in
:func:`ema_core.spool.sync_spool`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from emaboard_server.cli_args import add_server_arguments

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    """Register ``emaboard sync`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "sync",
        help="upload a run's local spool (points, snapshots, status) to a server",
        description="Upload every spool.sqlite under DIR to the server; safe to repeat.",
    )
    parser.add_argument("directory", metavar="DIR",
                        help="a run directory, or a directory above run directories")
    add_server_arguments(parser)
    parser.add_argument("--timeout-s", type=float, default=30.0,
                        help="timeout of one request in seconds (default 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Sync ``args.directory``; returns 0 on success, 1 when something could not be sent."""
    from ema_core.spool import sync_spool
    from ema_core.transport import TransportError

    try:
        results = sync_spool(args.directory, args.server, token=args.token,
                             timeout_s=args.timeout_s)
    except (FileNotFoundError, ValueError, TransportError) as exc:
        logger.error("sync failed: %s", exc)
        return 1
    for result in results:
        logger.info(
            "%s: run %s, %d points sent (%d new, %d conflicting with stored values), %d "
            "snapshots sent, %d missing, status %s",
            result.spool, result.run_id, result.points_sent, result.points_inserted,
            result.points_conflicting,
            result.snapshots_sent, result.snapshots_missing, result.status or "unchanged",
        )
    return 0

"""``emaboard demo``: train a small CNN on scikit-learn's digits with EMA and SWA, live.

Starts a server (SQLite in ``--data-dir``) unless ``--server URL`` names a running one,
streams the run to it, draws a progress bar, and ends with a table of the best validation
accuracy per model and the curl command that downloads the best EMA snapshot.
``--no-serve`` without ``--server`` trains offline and saves the best EMA snapshot to
``--data-dir`` instead. Training logic: :mod:`emaboard_server.demo.train`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_PROJECT = "emaboard-demo"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``demo`` on the ``emaboard`` command line and return its parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="train a small CNN on the digits with EMA and SWA, streamed live to the dashboard",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    from emaboard_server.demo.config import DemoConfig

    defaults = DemoConfig()
    parser.add_argument(
        "--epochs", type=int, default=defaults.epochs,
        help=f"training epochs (default {defaults.epochs})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    parser.add_argument(
        "--label-noise", type=float, default=defaults.label_noise,
        help=f"share of training labels replaced by a wrong class (default {defaults.label_noise})",
    )  # fmt: skip
    parser.add_argument(
        "--lr", type=float, default=defaults.lr, help=f"SGD learning rate (default {defaults.lr})"
    )
    parser.add_argument(
        "--server", metavar="URL", help="stream to this running server instead of starting one"
    )
    parser.add_argument(
        "--no-serve", action="store_true",
        help="do not start a server (with --server: stream there; without: train offline)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-serving", action="store_true",
        help="keep the dashboard up after training, until Ctrl-C",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", type=Path, default=Path("emaboard-data"),
        help="the started server's data folder (default ./emaboard-data)",
    )  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1", help="started server's host")
    parser.add_argument("--port", type=int, default=8000, help="started server's port (8000)")
    parser.add_argument("--project", default=DEFAULT_PROJECT, help=f"default {DEFAULT_PROJECT}")
    parser.add_argument("--run", help="run name (default digits-seed<seed>-<date-time>)")
    parser.add_argument(
        "--token", default=os.environ.get("EMABOARD_TOKEN"),
        help="the server's API token (default $EMABOARD_TOKEN)",
    )  # fmt: skip
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the demo as the parsed ``args`` say; return the process exit status."""
    from emaboard_server.cli import require_extras

    if not require_extras("demo", "demo"):
        return 2
    from rich.console import Console

    from emaboard_server.demo.config import DemoConfig
    from emaboard_server.demo.session import DemoSession
    from emaboard_server.local_server import LocalServer, ServerStartError

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    console = Console()
    try:
        config = DemoConfig(epochs=args.epochs, seed=args.seed, lr=args.lr,
                            label_noise=args.label_noise)  # fmt: skip
    except ValueError as error:
        console.print(f"[red]emaboard demo: {error}[/red]")
        return 2
    run_name = args.run or f"digits-seed{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    session = DemoSession(config, console, project=args.project, run=run_name,
                          token=args.token, data_dir=args.data_dir)  # fmt: skip
    if args.server or args.no_serve:
        return session.run(args.server)
    server = LocalServer(args.data_dir, host=args.host, port=args.port)
    _sigterm_as_ctrl_c()
    try:
        server.start()
    except ServerStartError as error:
        console.print(f"[red]emaboard demo: {error}[/red]")
        return 1
    try:
        status = session.run(server.url)
        if args.keep_serving and status == 0:
            console.print(f"Dashboard still at [bold]{server.url}/[/bold]: Ctrl-C to stop")
            _wait_for_ctrl_c(server)
        return status
    finally:
        server.stop()


def _sigterm_as_ctrl_c() -> None:
    """Make SIGTERM (``kill``, ``docker stop``) end the demo like Ctrl-C, so the server child
    process it started is stopped too instead of being left behind; and make Ctrl-C (SIGINT)
    work even when the demo was started with it ignored (Python then keeps it ignored: a
    shell script's background job, a service manager), since the demo says "Ctrl-C to stop"."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _wait_for_ctrl_c(server: Any) -> None:
    try:
        server.wait()
    except KeyboardInterrupt:
        pass

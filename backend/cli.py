"""The ``emaboard`` command line: ``serve``, ``demo`` and ``sync``.

Each subcommand lives in its own module, which exposes ``add_parser(subparsers)``
(registers its arguments and sets ``func``); heavy imports (torch, the server) happen
only when the chosen subcommand runs, so ``emaboard --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Sequence

SUBCOMMAND_MODULES = ("backend.serve", "backend.demo", "backend.sync")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="emaboard",
        description="Watch EMA/SWA weight averaging live while a model trains.",
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``emaboard`` console script; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

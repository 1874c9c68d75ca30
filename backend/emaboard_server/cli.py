"""The ``emaboard`` command line: ``serve``, ``demo``, ``sync`` and ``posthoc``.

Each subcommand lives in its own module, which exposes ``add_parser(subparsers)``
(registers its arguments and sets ``func``); heavy imports (torch, the server) happen
only when the chosen subcommand runs, so ``emaboard --help`` stays fast and works in a
base install (``pip install emaboard``: the training-side client only).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

SUBCOMMAND_MODULES = ("emaboard_server.serve", "emaboard_server.demo", "emaboard_server.sync",
                      "emaboard_server.whatif")

# What each extra of the ``emaboard`` distribution brings (pyproject.toml), by import name.
_SERVER_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings")
EXTRA_MODULES = {
    "server": _SERVER_MODULES,
    "demo": ("torch", "sklearn", "rich", *_SERVER_MODULES),
    "posthoc": ("torch", "rich"),
}


def missing_extra(command: str, *extras: str) -> str | None:
    """The error line for a subcommand whose extras are not installed, or ``None``.

    Args:
        command: the subcommand, for the message (``"serve"``).
        extras: keys of :data:`EXTRA_MODULES` the subcommand needs.

    Returns:
        ``"emaboard serve needs the 'server' extra (module 'fastapi' is not installed):
        pip install 'emaboard[server]'"`` naming the first missing module, else ``None``.
    """
    for extra in extras:
        for module in EXTRA_MODULES[extra]:
            if importlib.util.find_spec(module) is None:
                return (f"emaboard {command} needs the {extra!r} extra (module {module!r} is "
                        f"not installed): pip install 'emaboard[{extra}]'")
    return None


def require_extras(command: str, *extras: str) -> bool:
    """Write :func:`missing_extra`'s message to stderr and return ``False`` when one is missing."""
    message = missing_extra(command, *extras)
    if message is not None:
        sys.stderr.write(message + "\n")
    return message is None


def package_version() -> str:
    """The installed ``emaboard`` distribution's version (``"unknown"`` when not installed)."""
    try:
        return version("emaboard")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="emaboard",
        description="Watch EMA/SWA weight averaging live while a model trains.",
    )
    parser.add_argument("--version", action="version", version=f"emaboard {package_version()}")
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

"""``emaboard posthoc``: the what-if decay sweep after training, from stored snapshots.

Rebuilds the EMA of each σ_rel in a grid from a run's post-hoc snapshots — a local
``PostHocEMA`` snapshot folder, or the snapshots a server stores for a run — evaluates each
with the user's entry point ``module:function`` and prints the results; ``--upload`` sends
them to the run as ``posthoc/<σ_rel>/<metric>`` points, as the live sweep does.

The entry point is called once per σ_rel with the rebuilt weights: a dict of CPU float32
torch tensors keyed like ``model.state_dict()`` (wrapper prefixes stripped), and returns
``{metric: value}``::

    def evaluate(weights):                      # emaboard posthoc --eval mytrain:evaluate
        model = build_model(); model.load_state_dict(weights)
        return {"accuracy": accuracy(model, val_loader)}
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from emaboard_server.cli_args import add_server_arguments

logger = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    """Register ``emaboard posthoc`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "posthoc", help="what-if decay: evaluate EMAs of many sigma_rels rebuilt from snapshots",
        description="Rebuild the EMA of each sigma_rel from post-hoc snapshots (a folder, or a "
                    "run's on the server), evaluate each with EVAL, print the results.",
    )
    parser.add_argument("directory", nargs="?", metavar="DIR",
                        help="a PostHocEMA snapshot folder (or use --run to read the server's)")
    parser.add_argument("--eval", required=True, metavar="MODULE:FUNCTION", dest="entry",
                        help="function(weights: dict[str, Tensor]) -> {metric: value}")
    parser.add_argument("--run", type=int, metavar="ID",
                        help="the run: its snapshots when no DIR is given; --upload's target")
    parser.add_argument("--sigma-rels", metavar="LIST",
                        help="comma-separated sigma_rels (default: --count over the "
                             "well-posed range)")
    parser.add_argument("--count", type=int, default=10, help="grid size (default 10)")
    parser.add_argument("--step", type=int, help="a snapshot step (default the latest)")
    parser.add_argument("--upload", action="store_true",
                        help="send the results to --run as posthoc/<sigma_rel>/<metric> points")
    parser.add_argument("--cache", metavar="DIR", help="where the server's snapshots are "
                        "downloaded (default .emaboard/posthoc/run-<ID>; kept, resumable)")
    add_server_arguments(parser)
    parser.set_defaults(func=run)


def load_entry_point(spec: str) -> Callable[[dict[str, Any]], Mapping[str, Any]]:
    """Import ``module:function`` (the current directory is importable).

    Raises:
        ValueError: not ``module:function``, or the module or function does not exist.
    """
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"Invalid --eval {spec!r}: expected module:function, e.g. "
                         "mytrain:evaluate")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"Invalid --eval {spec!r}: cannot import {module_name!r} ({exc})") \
            from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"Invalid --eval {spec!r}: {module_name} has no function "
                         f"{function_name!r}")
    return function  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> int:
    """Run the sweep; 0 on success, 1 on an error (logged), 2 when extras are missing."""
    from emaboard_server.cli import require_extras

    if not require_extras("posthoc", "posthoc"):
        return 2
    from ema_core.exceptions import EmaCoreError
    from ema_core.transport import TransportError

    try:
        return _run(args)
    except (ValueError, FileNotFoundError, EmaCoreError, TransportError) as exc:
        logger.error("emaboard posthoc: %s", exc)
        return 1


def _run(args: argparse.Namespace) -> int:
    from ema_core.posthoc_files import list_posthoc_snapshots

    if args.directory is None and args.run is None:
        raise ValueError("Pass a snapshot folder DIR, or --run ID to use the server's")
    if args.upload and args.run is None:
        raise ValueError("--upload needs --run ID (the run the points belong to)")
    evaluate = load_entry_point(args.entry)
    folder = Path(args.directory) if args.directory else _download(args)
    snapshots = list_posthoc_snapshots(folder)
    if not snapshots:
        raise ValueError(f"No post-hoc snapshots in {str(folder)!r}")
    sigmas = ([float(x) for x in args.sigma_rels.split(",") if x.strip()]
              if args.sigma_rels else None)
    step, results = _sweep(snapshots, evaluate, sigmas, args.step, args.count)
    _report(step, results)
    if args.upload:
        _upload(args, step, results)
    return 0


def _sweep(
    snapshots: list[Any], evaluate: Callable[[dict[str, Any]], Mapping[str, Any]],
    sigmas: list[float] | None, step: int | None, count: int,
) -> tuple[int, dict[float, dict[str, float]]]:
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ema_core.whatif import posthoc_grid, sweep_posthoc

    target, grid = posthoc_grid(snapshots, step=step, count=count)
    grid = sigmas if sigmas is not None else grid
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[last]}"), TimeElapsedColumn())
    with Progress(*columns) as progress:
        task = progress.add_task(f"step {target}: {len(grid)} EMAs", total=len(grid), last="")

        def advance(sigma: float, metrics: dict[str, float]) -> None:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in list(metrics.items())[:2])
            progress.update(task, advance=1, last=f"sigma_rel {sigma:g}: {shown}")

        results = sweep_posthoc(
            snapshots, lambda arrays: evaluate({k: torch.from_numpy(v) for k, v in
                                                arrays.items()}),
            sigma_rels=grid, step=target, on_result=advance)
    return target, results


def whatif_table(step: int, results: Mapping[float, Mapping[str, float]]) -> Any:
    """A rich Table of a sweep: σ_rel, the constant β with its width at ``step``, each metric
    (the best one starred: lowest for a loss/error, else highest)."""
    from rich.table import Table

    from ema_core.effective_length import sigma_rel_to_decay

    metrics = sorted({m for values in results.values() for m in values})
    best = best_sigma_rels(results)
    table = Table(title=f"What-if decay at step {step}")
    for header in ("sigma_rel", "beta at this step", *metrics):
        table.add_column(header, justify="right")
    for sigma, values in results.items():
        cells = [f"{values[m]:.4f}{' *' if best[m] == sigma else ''}" if m in values else ""
                 for m in metrics]
        table.add_row(f"{sigma:g}", f"{sigma_rel_to_decay(sigma, step):.6f}", *cells)
    return table


def best_sigma_rels(results: Mapping[float, Mapping[str, float]]) -> dict[str, float]:
    """Per metric, the σ_rel with the best value (the smallest σ_rel wins a tie)."""
    from ema_core.metric_keys import default_mode

    best: dict[str, float] = {}
    for metric in sorted({m for values in results.values() for m in values}):
        sign = 1.0 if default_mode(metric) == "min" else -1.0
        best[metric] = min((sign * v[metric], s) for s, v in results.items() if metric in v)[1]
    return best


def _report(step: int, results: dict[float, dict[str, float]]) -> None:
    from rich.console import Console

    from ema_core.effective_length import sigma_rel_to_decay

    console = Console()
    console.print(whatif_table(step, results))
    for metric, sigma in best_sigma_rels(results).items():
        console.print(f"best {metric}: sigma_rel {sigma:g} "
                      f"(constant beta {sigma_rel_to_decay(sigma, step):.6f} at step {step})")


def _download(args: argparse.Namespace) -> Path:
    """The run's post-hoc snapshots in the cache folder (files already there are kept)."""
    from ema_core.transport import ApiClient

    folder = Path(args.cache or Path(".emaboard") / "posthoc" / f"run-{args.run}")
    folder.mkdir(parents=True, exist_ok=True)
    api = ApiClient(args.server, token=args.token, timeout_s=300.0)
    try:
        listing = api.get_json(f"/api/runs/{args.run}/posthoc")
        for snap in listing["snapshots"]:
            path = folder / f"{snap['averager']}-{snap['step']:010d}.safetensors"
            if not path.is_file() or path.stat().st_size != snap["size_bytes"]:
                api.download(snap["download_url"], path)
    finally:
        api.close()
    logger.info("%d snapshots of run %s in %s", len(listing["snapshots"]), args.run, folder)
    return folder


def _upload(args: argparse.Namespace, step: int, results: dict[float, dict[str, float]]) -> None:
    from ema_core.metric_keys import posthoc_key
    from ema_core.transport import ApiClient

    now = time.time()
    points = [(posthoc_key(sigma, metric), step, value, now)
              for sigma, values in results.items() for metric, value in values.items()]
    api = ApiClient(args.server, token=args.token)
    try:
        api.post_points(args.run, points)
    finally:
        api.close()
    logger.info("sent %d posthoc points to run %s at step %d", len(points), args.run, step)

"""One demo run from the terminal: stream (or not), progress bar, final table and download hint."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ema_core.snapshot import write_snapshot
from emaboard_server.demo.config import DemoConfig
from emaboard_server.demo.report import (
    ProgressBar,
    best_snapshot_url,
    curl_command,
    posthoc_file_url,
    results_table,
    whatif_report,
)
from emaboard_server.demo.train import DemoResult, train

logger = logging.getLogger(__name__)

FINISH_TIMEOUT_S = 30.0
"""How long the end of the run waits for the last points and the best snapshot to upload."""

RUN_ID_WAIT_S = 5.0
"""How long the start waits for the server to create the run, to print the run page's URL."""

UNANSWERED_FINISH_TIMEOUT_S = 1.0
"""How long the end waits when the server never answered during the whole run: everything is
in the local spool already, and the closing hint says how to upload it (``emaboard sync``)."""


class DemoSession:
    """Trains once with a progress bar and prints the outcome.

    Args:
        config: The training hyper-parameters.
        console: Where the progress bar, table and hints go.
        project: The run's project on the server.
        run: The run's name.
        token: The server's API token, if it has one.
        data_dir: Where an offline run saves its best EMA snapshot.
    """

    def __init__(
        self,
        config: DemoConfig,
        console: Console,
        *,
        project: str,
        run: str,
        token: str | None,
        data_dir: Path,
    ) -> None:
        self.config, self.console = config, console
        self.project, self.run_name, self.token, self.data_dir = project, run, token, data_dir

    def run(self, server: str | None) -> int:
        """Train, streaming to ``server`` (offline when None); return the exit status."""
        try:
            if server is None:
                result = self._train_offline()
            else:
                result, run_id, run_dir = self._train_streaming(server.rstrip("/"))
        except KeyboardInterrupt:
            self.console.print("[yellow]Interrupted: training stopped[/yellow]")
            return 130
        self.console.print(results_table(result))
        for part in whatif_report(result):
            self.console.print(part, soft_wrap=True)
        if server is None:
            self._print_saved_snapshot(result)
        else:
            self._print_download_hint(server.rstrip("/"), run_id, run_dir, result)
        return 0

    def _progress(self) -> ProgressBar:
        return ProgressBar(self.console, epochs=self.config.epochs)

    def _train_offline(self) -> DemoResult:
        self.console.print("No server: training offline (nothing is streamed)")
        with self._progress() as progress:
            result = train(self.config, progress=progress,
                           posthoc_dir=self.data_dir / f"{self.run_name}-posthoc")
        return result

    def _print_saved_snapshot(self, result: DemoResult) -> None:
        best = result.best_ema
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / f"{self.run_name}-best-{best.averager}.safetensors"
        write_snapshot(best.tensors, best.metadata, path)
        self.console.print(
            f"Best {best.averager} snapshot (accuracy {best.accuracy:.4f} at step {best.step}) "
            f"saved to {path}",
            soft_wrap=True,
        )

    def _train_streaming(self, server: str) -> tuple[DemoResult, int | None, Path]:
        from ema_core.client import Monitor

        monitor = Monitor(
            self.project, self.run_name, server, self.config.to_dict(), token=self.token,
            tags=("demo", f"seed{self.config.seed}"),
        )
        with monitor:
            self._print_dashboard_url(server, monitor)
            with self._progress() as progress:
                result = train(self.config, monitor=monitor, progress=progress,
                               posthoc_dir=monitor.run_dir / "posthoc")
            answered = monitor.run_id is not None
            monitor.finish(timeout_s=FINISH_TIMEOUT_S if answered else UNANSWERED_FINISH_TIMEOUT_S)
        return result, monitor.run_id, monitor.run_dir

    def _print_dashboard_url(self, server: str, monitor: Any) -> None:
        deadline = time.monotonic() + RUN_ID_WAIT_S
        while monitor.run_id is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if monitor.run_id is None:
            self.console.print(
                f"[yellow]The server at {server} has not answered within {RUN_ID_WAIT_S:g} s: "
                "training anyway; what it cannot take is spooled and sent when it answers"
                "[/yellow]"
            )
        page = f"{server}/run.html?id={monitor.run_id}" if monitor.run_id else f"{server}/"
        self.console.print(
            f"Dashboard: [bold]{page}[/bold] (run {self.project}/{self.run_name})", soft_wrap=True
        )

    def _print_download_hint(
        self, server: str, run_id: int | None, run_dir: Path, result: DemoResult
    ) -> None:
        best = result.best_ema
        if run_id is None:
            self.console.print(
                f"[yellow]The server never answered: the run is spooled in {run_dir}; upload "
                f"it with `emaboard sync {run_dir}`[/yellow]",
                soft_wrap=True,
            )
            return
        url = best_snapshot_url(server, run_id, best.averager)
        self.console.print(
            f"Best {best.averager} snapshot: accuracy {best.accuracy:.4f} at step {best.step}. "
            "Download it with:"
        )
        self.console.print(curl_command(url, best.averager, self.token), soft_wrap=True)
        last = result.history[-1]
        if last.whatif:
            from emaboard_server.whatif import best_sigma_rels

            sigma = best_sigma_rels(last.whatif)["accuracy"]
            url = posthoc_file_url(server, run_id, sigma, last.step)
            self.console.print(f"The EMA of the best sigma_rel ({sigma:g}), rebuilt by the "
                               "server from the post-hoc snapshots:")
            self.console.print(curl_command(url, f"posthoc-{sigma:g}", self.token),
                               soft_wrap=True)

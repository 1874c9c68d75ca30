"""What the demo shows in the terminal: a progress bar while training, a table at the end."""

from __future__ import annotations

import shlex
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from emaboard_server.demo.train import DemoResult, EpochResult


class ProgressBar:
    """A rich progress bar over all training steps: epoch, step, loss, live vs best-EMA accuracy.

    Implements :class:`emaboard_server.demo.train.Progress`; use as a context manager.
    """

    def __init__(self, console: Console, *, epochs: int) -> None:
        self.epochs = epochs
        self.live_accuracy = float("nan")
        self.best_ema_accuracy = float("nan")
        self._bar = RichProgress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("val acc live {task.fields[live]:.3f}, best EMA {task.fields[best]:.3f}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._task = self._bar.add_task(
            "train", total=None, epoch=1, epochs=epochs, loss=float("nan"),
            live=self.live_accuracy, best=self.best_ema_accuracy,
        )  # fmt: skip

    def on_start(self, total_steps: int) -> None:
        self._bar.update(self._task, total=total_steps)

    def on_step(self, epoch: int, step: int, loss: float) -> None:
        self._bar.update(self._task, completed=step, epoch=epoch + 1, loss=loss)

    def on_epoch(self, result: EpochResult, best_ema_accuracy: float) -> None:
        self.live_accuracy = result.results["live"]["accuracy"]
        self.best_ema_accuracy = best_ema_accuracy
        self._bar.update(self._task, live=self.live_accuracy, best=best_ema_accuracy)

    def __enter__(self) -> ProgressBar:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()


def results_table(result: DemoResult) -> Table:
    """Best validation accuracy per model (live, each EMA, SWA) and the final one."""
    table = Table(title=f"Validation accuracy after {result.config.epochs} epochs")
    table.add_column("model")
    table.add_column("best", justify="right")
    table.add_column("at epoch", justify="right")
    table.add_column("final", justify="right")
    final = result.history[-1].results
    for name, (accuracy, epoch) in result.best_accuracy().items():
        last = final.get(name, {}).get("accuracy")
        table.add_row(name, f"{accuracy:.4f}", str(epoch), "-" if last is None else f"{last:.4f}")
    return table


def whatif_report(result: DemoResult) -> list[Any]:
    """The last epoch's what-if decay sweep as a table, and how the best σ_rel moved."""
    from emaboard_server.whatif import best_sigma_rels, whatif_table

    last = result.history[-1]
    if not last.whatif:
        return []
    moves = [f"{best_sigma_rels(e.whatif)['accuracy']:g}" for e in result.history if e.whatif]
    return [whatif_table(last.step, last.whatif),
            f"Best sigma_rel for accuracy after each epoch: {' '.join(moves)}"]


def posthoc_file_url(server: str, run_id: int, sigma_rel: float, step: int) -> str:
    """The REST URL that answers the EMA of ``sigma_rel`` at ``step`` rebuilt by the server."""
    return (f"{server.rstrip('/')}/api/runs/{run_id}/posthoc/file"
            f"?sigma_rel={sigma_rel:g}&step={step}")


def best_snapshot_url(server: str, run_id: int, averager: str) -> str:
    """The REST URL that answers the best snapshot file of ``averager`` by validation accuracy."""
    return (
        f"{server.rstrip('/')}/api/runs/{run_id}/snapshots/best"
        f"?averager={averager}&metric=accuracy&mode=max"
    )


def curl_command(url: str, averager: str, token: str | None = None) -> str:
    """A copy-pasteable curl command that downloads ``url`` to ``best-<averager>.safetensors``."""
    command = f"curl -fsS -o {shlex.quote(f'best-{averager}.safetensors')}"
    if token:
        command += ' -H "Authorization: Bearer $EMABOARD_TOKEN"'
    return f"{command} {shlex.quote(url)}"

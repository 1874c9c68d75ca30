"""PyTorch Lightning integration: ``EmaboardCallback``.

::

    trainer = Trainer(callbacks=[EmaboardCallback("cifar", "run-1", decays=(0.999,),
                                                  eval_fn=accuracy_on_val)])

- **Averaging**: on ``setup("fit")`` the callback creates an :class:`~ema_core.ema.EMA`
  (one shadow per decay) and optionally an :class:`~ema_core.swa.SWA` on the LightningModule;
  ``on_train_batch_end`` updates them after each *optimizer* step (batches that only
  accumulate gradients leave ``trainer.global_step`` unchanged and are skipped).
- **Streaming**: the training loss (``outputs["loss"]``) every ``trainer.log_every_n_steps``
  steps and weight statistics every ``stats_every`` steps, at ``trainer.global_step``.
- **Dual evaluation**: ``on_validation_end`` (not during the sanity check) runs ``eval_fn``
  on the live module and on every shadow swapped in (``ema_core.swap.evaluate_all``) and
  streams ``eval/<model>/<metric>``. Re-running Lightning's own validation loop once per
  shadow would re-enter the trainer and re-log every metric, so the comparison uses a plain
  function instead. Without ``eval_fn`` only the live ``val*`` metrics of
  ``trainer.callback_metrics`` are streamed (as ``eval/live/<name>``).
- Distributed (Lightning's DDP strategy, or any that runs one process per device): every
  rank averages (each keeps its shadow; for a sharded model, the shadow of its own shards)
  and evaluates, so that collectives inside ``eval_fn`` or a sharded forward line up; only
  global rank 0 streams (the Monitor is inert elsewhere, see :class:`ema_core.client.Monitor`).
- ``on_train_end`` marks the run finished, ``on_exception`` crashed.

``lightning.pytorch`` is used when installed, else ``pytorch_lightning``; the callback
belongs to that package's ``Trainer``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ema_core.integrations._common import EvalFn, Streamer, StreamSpec, jsonable_config
from ema_core.metric_keys import eval_key

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning import Callback  # type: ignore[assignment]
    except ImportError as exc:
        raise ImportError(
            "ema_core.integrations.lightning needs PyTorch Lightning: pip install lightning"
        ) from exc

__all__ = ["EmaboardCallback"]


class EmaboardCallback(Callback):
    """Averages the module's weights and streams the run to emaboard.

    Args:
        project: emaboard project name.
        run: run name (the same name resumes the run).
        server: emaboard server URL.
        decays: EMA decays (empty: no EMA).
        swa_start_step: optimizer steps before SWA starts (None: no SWA).
        stats_every: weight statistics every this many optimizer steps.
        eval_fn: ``module -> {metric: value}`` for the dual evaluation (see the module doc).
        track_best: eval metric whose improvement saves a snapshot of ``track_averager``.
        track_mode: ``"max"`` or ``"min"``; None: by the metric's name, ``"min"`` for a
            loss or an error.
        track_averager: averager to snapshot (default: the first).
        **monitor_kwargs: passed to :class:`ema_core.client.Monitor` (``token``, ``run_dir``,
            ``flush_interval_ms``, …).

    Raises:
        ValueError: neither ``decays`` nor ``swa_start_step`` given.
    """

    def __init__(
        self, project: str, run: str, server: str = "http://127.0.0.1:8000", *,
        decays: Sequence[float] = (0.999,), swa_start_step: int | None = None,
        stats_every: int = 50, eval_fn: EvalFn | None = None, track_best: str | None = None,
        track_mode: str | None = None, track_averager: str | None = None, **monitor_kwargs: Any,
    ) -> None:
        super().__init__()
        self.streamer = Streamer(StreamSpec(
            project, run, server, decays, swa_start_step, stats_every, eval_fn, track_best,
            track_mode, track_averager, monitor_kwargs,
        ))
        self._last_step = -1

    @property
    def averagers(self) -> list[Any]:
        """The EMA and/or SWA objects (empty before ``setup``; on every rank)."""
        return self.streamer.averagers

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self.streamer.start(pl_module, jsonable_config(dict(pl_module.hparams)))

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_step = int(trainer.global_step)  # 0, or the resumed step

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if step == self._last_step or self.streamer.monitor is None:
            return  # gradient accumulation: no optimizer step yet
        self._last_step = step
        scalars: dict[str, float] = {}
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None and step % max(1, int(trainer.log_every_n_steps)) == 0:
            scalars["loss"] = float(loss.detach() if hasattr(loss, "detach") else loss)
        self.streamer.update(pl_module, step, scalars)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or self.streamer.monitor is None:
            return
        step = int(trainer.global_step)
        if self.streamer.spec.eval_fn is not None:
            self.streamer.evaluate(pl_module, step, self.streamer.spec.eval_fn)
            return
        live = {eval_key("live", name): float(value)
                for name, value in trainer.callback_metrics.items() if name.startswith("val")}
        self.streamer.log(step, live)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.streamer.finish("finished")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.streamer.finish("crashed")

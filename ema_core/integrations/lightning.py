"""PyTorch Lightning integration: ``EmaboardCallback``.

::

    trainer = Trainer(callbacks=[EmaboardCallback("cifar", "run-1", decays=(0.999,),
                                                  eval_fn=accuracy_on_val,
                                                  ema_kwargs={"use_warmup": True})])

- **Averaging**: on ``on_train_start`` — after the strategy has moved the module to its
  device and converted it to its precision (``precision="bf16-true"``, ``"64-true"``), after
  ``configure_model`` built its layers, and after a checkpoint was restored — the callback
  creates an :class:`~ema_core.ema.EMA` (one shadow per decay) and optionally an
  :class:`~ema_core.swa.SWA` on the LightningModule, so the shadows live where the weights
  train; ``on_train_batch_end`` updates them after each *optimizer* step (batches that only
  accumulate gradients leave ``trainer.global_step`` unchanged and are skipped).
- **Options**: ``ema_kwargs``, ``swa_kwargs`` and ``monitor_kwargs`` go to the EMA, the SWA and
  the Monitor, checked when the callback is built (a bad key is named with where it belongs).
- **Checkpoints**: the averagers' ``state_dict()`` (shadows, step counters, decays, SWA's
  ``n_averaged``) and the server run's identity are this callback's state in every Lightning
  checkpoint. ``trainer.fit(model, ckpt_path=...)`` restores them: training resumed mid-epoch
  is bit-identical to an uninterrupted one (with a resumable dataloader, as Lightning itself
  needs), and the stream continues the same server run — the checkpoint's, whatever its
  name — with no duplicate points and no gap, status back to running. A fit without a
  checkpoint of ours starts a new run (``resume="never"``: the name is printed when taken).
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
from ema_core.integrations._options import check_unknown
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
        run: run name of a new training (``run-2``, ... when taken); a training resumed from
            a checkpoint continues the checkpoint's run.
        server: emaboard server URL (default ``$EMABOARD_SERVER``, else local).
        decays: EMA decays (empty: no EMA).
        swa_start_step: optimizer steps before SWA starts (None: no SWA).
        stats_every: weight statistics every this many optimizer steps.
        eval_fn: ``module -> {metric: value}`` for the dual evaluation (see the module doc).
        track_best: eval metric whose improvement saves a snapshot of ``track_averager``.
        track_mode: ``"max"`` or ``"min"``; None: by the metric's name, ``"min"`` for a
            loss or an error.
        track_averager: averager to snapshot (default: the first).
        ema_kwargs: further :class:`~ema_core.ema.EMA` options (``use_warmup``,
            ``update_after_step``, ``update_every``, ``schedule``, ...).
        swa_kwargs: further :class:`~ema_core.swa.SWA` options (``update_every``, ...).
        monitor_kwargs: further :class:`~ema_core.client.Monitor` options (``tags``, ``token``,
            ``run_dir``, ``flush_interval_ms``, ...).

    Raises:
        ValueError: neither ``decays`` nor ``swa_start_step`` given, or an option value the
            EMA, SWA or Monitor refuses.
        TypeError: an unknown option, or one given outside its dict (the message names the
            key and the dict it belongs in).
    """

    def __init__(
        self, project: str, run: str, server: str | None = None, *,
        decays: Sequence[float] = (0.999,), swa_start_step: int | None = None,
        stats_every: int = 50, eval_fn: EvalFn | None = None, track_best: str | None = None,
        track_mode: str | None = None, track_averager: str | None = None,
        ema_kwargs: Mapping[str, Any] | None = None, swa_kwargs: Mapping[str, Any] | None = None,
        monitor_kwargs: Mapping[str, Any] | None = None, **unknown: Any,
    ) -> None:
        super().__init__()
        check_unknown(type(self).__name__, unknown)
        self.streamer = Streamer(StreamSpec(
            project, run, server, decays, swa_start_step, stats_every, eval_fn, track_best,
            track_mode, track_averager, ema_kwargs or {}, swa_kwargs or {}, monitor_kwargs or {},
        ))
        self._last_step = -1

    @property
    def averagers(self) -> list[Any]:
        """The EMA and/or SWA objects (empty before ``on_train_start``; on every rank)."""
        return self.streamer.averagers

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_step = int(trainer.global_step)  # 0, or the resumed step
        self.streamer.start(pl_module, jsonable_config(dict(pl_module.hparams)))

    def state_dict(self) -> dict[str, Any]:
        """The averagers' state and the server run's identity (in every checkpoint)."""
        return self.streamer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` from a checkpoint (applied on ``on_train_start``).

        Raises:
            StateDictError: a state of other averagers or of another callback.
        """
        self.streamer.load_state_dict(state_dict)

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

"""Hugging Face ``transformers`` integration: ``EmaboardTrainerCallback``.

::

    trainer = Trainer(model, args, train_dataset=..., eval_dataset=...,
                      callbacks=[EmaboardTrainerCallback("glue", "bert-lr2e-5")])

- **Averaging**: ``on_train_begin`` (the model is on its device, a checkpoint's weights are
  loaded) creates the EMA (one shadow per decay) and optionally the SWA on the trained model;
  ``on_step_end`` (called once per optimizer step) updates them. ``ema_kwargs``,
  ``swa_kwargs`` and ``monitor_kwargs`` go to the EMA, the SWA and the Monitor, checked when
  the callback is built.
- **Checkpoints**: ``on_save`` writes the averagers' state into the Trainer's
  ``checkpoint-N/`` folder as ``emaboard_averagers.safetensors`` (every shadow) and
  ``emaboard_state.json`` (step counters, decays, schedules, SWA's ``n_averaged``, the server
  run's identity) — never a pickle. ``trainer.train(resume_from_checkpoint=...)`` restores
  them (from ``checkpoint-<global_step>`` in ``output_dir``, or from
  ``TrainingArguments.resume_from_checkpoint`` when it names the folder): resumed
  mid-epoch, the shadows are bit-identical to an uninterrupted run, and the stream continues
  the same server run with no duplicate points and no gap. Resumed from a checkpoint without
  these files, the averagers start from the resumed weights (a warning says so).
- **Streaming**: ``on_log`` forwards the Trainer's training logs (``loss``,
  ``learning_rate``, ``grad_norm``, …) as ``train/<name>``, and its evaluation and summary
  logs (``eval_*``, ``train_*``) as ``hf/<name>``; weight statistics every ``stats_every``
  steps. Points are placed at ``state.global_step``.
- **Dual evaluation**: ``on_evaluate`` runs ``eval_fn`` on the live model and on every shadow
  swapped in and streams ``eval/<model>/<metric>``. Without ``eval_fn``, the default
  measures the mean ``loss`` the model returns over the Trainer's ``eval_dataloader``
  (weighted by batch size), the same function for every model, so the numbers compare.
- Distributed (``torchrun``/``accelerate launch``): every process averages (each keeps its
  shadow) and evaluates; only the main process streams (the Monitor is inert elsewhere).
- ``on_train_end`` marks the run finished; a process that dies of an exception is marked
  crashed by the Monitor's exit hook.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ema_core.averager_state import STATE_FILE
from ema_core.integrations._common import EvalFn, Streamer, StreamSpec, jsonable_config
from ema_core.integrations._options import check_unknown

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "ema_core.integrations.transformers needs transformers: pip install transformers"
    ) from exc

__all__ = ["EmaboardTrainerCallback", "mean_loss_fn"]

logger = logging.getLogger(__name__)


def mean_loss_fn(dataloader: Iterable[Mapping[str, Any]]) -> EvalFn:
    """An eval function: the batch-size-weighted mean of ``model(**batch)["loss"]``.

    Args:
        dataloader: batches as dicts of tensors (keyword arguments of the model).

    Returns:
        ``model -> {"loss": float}``; the batches are moved to the model's device.

    Raises:
        ValueError (when called): the model's output has no ``loss``, or no batch.
    """

    @torch.no_grad()
    def evaluate(model: nn.Module) -> dict[str, float]:
        model.eval()
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for batch in dataloader:
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                      for k, v in batch.items()}
            output = model(**inputs)
            loss = output.get("loss") if isinstance(output, Mapping) else None
            if loss is None:
                raise ValueError("Model output has no 'loss': pass eval_fn= to the callback")
            size = _batch_size(inputs)
            total, count = total + float(loss) * size, count + size
        if not count:
            raise ValueError("Empty eval dataloader: pass eval_dataset= to the Trainer")
        return {"loss": total / count}

    return evaluate


def _batch_size(inputs: Mapping[str, Any]) -> int:
    for value in inputs.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return 1


class EmaboardTrainerCallback(TrainerCallback):
    """Averages the model's weights and streams the run to emaboard.

    Args:
        project: emaboard project name.
        run: run name of a new training (``run-2``, ... when taken); a training resumed from
            a checkpoint continues the checkpoint's run.
        server: emaboard server URL (default ``$EMABOARD_SERVER``, else local).
        decays: EMA decays (empty: no EMA).
        swa_start_step: optimizer steps before SWA starts (None: no SWA).
        stats_every: weight statistics every this many optimizer steps.
        eval_fn: ``model -> {metric: value}`` for the dual evaluation (default:
            :func:`mean_loss_fn` over the eval dataloader).
        track_best: eval metric whose improvement saves a snapshot of ``track_averager``.
        track_mode: ``"max"`` or ``"min"``; None: by the metric's name, ``"min"`` for a
            loss or an error.
        track_averager: averager to snapshot (default: the first).
        ema_kwargs: further :class:`~ema_core.ema.EMA` options (``use_warmup``, ...).
        swa_kwargs: further :class:`~ema_core.swa.SWA` options (``update_every``, ...).
        monitor_kwargs: further :class:`~ema_core.client.Monitor` options (``tags``,
            ``token``, ...).

    Raises:
        ValueError: neither ``decays`` nor ``swa_start_step`` given, or an option value the
            EMA, SWA or Monitor refuses.
        TypeError: an unknown option, or one given outside its dict (named, with its dict).
    """

    def __init__(
        self, project: str, run: str, server: str | None = None, *,
        decays: Sequence[float] = (0.999,), swa_start_step: int | None = None,
        stats_every: int = 50, eval_fn: EvalFn | None = None, track_best: str | None = None,
        track_mode: str | None = None, track_averager: str | None = None,
        ema_kwargs: Mapping[str, Any] | None = None, swa_kwargs: Mapping[str, Any] | None = None,
        monitor_kwargs: Mapping[str, Any] | None = None, **unknown: Any,
    ) -> None:
        check_unknown(type(self).__name__, unknown)
        self.streamer = Streamer(StreamSpec(
            project, run, server, decays, swa_start_step, stats_every, eval_fn, track_best,
            track_mode, track_averager, ema_kwargs or {}, swa_kwargs or {}, monitor_kwargs or {},
        ))

    @property
    def averagers(self) -> list[Any]:
        """The EMA and/or SWA objects (empty before training; on every process)."""
        return self.streamer.averagers

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        if model is not None:
            self.streamer.start(model, jsonable_config(args.to_sanitized_dict()),
                                checkpoint=_resumed_folder(args, state))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and self.averagers and folder.is_dir():
            self.streamer.save_files(folder, global_step=int(state.global_step))

    def on_step_end(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                    **kwargs: Any) -> None:
        if model is not None and self.streamer.monitor is not None:
            self.streamer.update(model, int(state.global_step), {})

    def on_log(self, args: Any, state: Any, control: Any,
               logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        scalars = {
            (f"hf/{name}" if name.startswith(("eval_", "train_")) else f"train/{name}"): value
            for name, value in (logs or {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        self.streamer.log(int(state.global_step), scalars)

    def on_evaluate(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                    eval_dataloader: Any = None, **kwargs: Any) -> None:
        if model is None or self.streamer.monitor is None:
            return
        eval_fn = self.streamer.spec.eval_fn
        if eval_fn is None:
            if eval_dataloader is None:
                return
            eval_fn = mean_loss_fn(eval_dataloader)
        self.streamer.evaluate(model, int(state.global_step), eval_fn)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.streamer.finish("finished")


def _resumed_folder(args: Any, state: Any) -> Path | None:
    """The checkpoint folder the Trainer resumed from, when it holds our files (else None).

    The Trainer does not tell callbacks which folder it resumed from; its ``global_step``
    does: ``<output_dir>/checkpoint-<global_step>``, or ``args.resume_from_checkpoint`` when
    it names a folder whose state has that step.
    """
    step = int(state.global_step)
    if step == 0:
        return None
    candidates = [Path(args.output_dir) / f"checkpoint-{step}"]
    if isinstance(args.resume_from_checkpoint, str):
        candidates.insert(0, Path(args.resume_from_checkpoint))
    for folder in candidates:
        if (folder / STATE_FILE).is_file() and _saved_step(folder) == step:
            return folder
    logger.warning(
        "emaboard: training resumed at step %d, but no emaboard state (%s) with that step is "
        "in %s: the averagers start from the resumed weights and the stream goes to a new "
        "run. Pass TrainingArguments(resume_from_checkpoint=<folder>) when the checkpoint is "
        "elsewhere", step, STATE_FILE, " or ".join(str(f) for f in candidates))
    return None


def _saved_step(folder: Path) -> int | None:
    try:
        saved = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        return int(saved["extra"]["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

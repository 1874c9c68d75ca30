"""Hugging Face ``transformers`` integration: ``EmaboardTrainerCallback``.

::

    trainer = Trainer(model, args, train_dataset=..., eval_dataset=...,
                      callbacks=[EmaboardTrainerCallback("glue", "bert-lr2e-5")])

- **Averaging**: ``on_train_begin`` creates the EMA (one shadow per decay) and optionally
  the SWA on the trained model; ``on_step_end`` (called once per optimizer step) updates them.
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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ema_core.integrations._common import EvalFn, Streamer, StreamSpec, jsonable_config

try:
    from transformers import TrainerCallback
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError(
        "ema_core.integrations.transformers needs transformers: pip install transformers"
    ) from exc

__all__ = ["EmaboardTrainerCallback", "mean_loss_fn"]


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
        run: run name (the same name resumes the run).
        server: emaboard server URL.
        decays: EMA decays (empty: no EMA).
        swa_start_step: optimizer steps before SWA starts (None: no SWA).
        stats_every: weight statistics every this many optimizer steps.
        eval_fn: ``model -> {metric: value}`` for the dual evaluation (default:
            :func:`mean_loss_fn` over the eval dataloader).
        track_best: eval metric whose improvement saves a snapshot of ``track_averager``.
        track_mode: ``"max"`` or ``"min"``; None: by the metric's name, ``"min"`` for a
            loss or an error.
        track_averager: averager to snapshot (default: the first).
        **monitor_kwargs: passed to :class:`ema_core.client.Monitor`.

    Raises:
        ValueError: neither ``decays`` nor ``swa_start_step`` given.
    """

    def __init__(
        self, project: str, run: str, server: str = "http://127.0.0.1:8000", *,
        decays: Sequence[float] = (0.999,), swa_start_step: int | None = None,
        stats_every: int = 50, eval_fn: EvalFn | None = None, track_best: str | None = None,
        track_mode: str | None = None, track_averager: str | None = None, **monitor_kwargs: Any,
    ) -> None:
        self.streamer = Streamer(StreamSpec(
            project, run, server, decays, swa_start_step, stats_every, eval_fn, track_best,
            track_mode, track_averager, monitor_kwargs,
        ))

    @property
    def averagers(self) -> list[Any]:
        """The EMA and/or SWA objects (empty before training; on every process)."""
        return self.streamer.averagers

    def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module | None = None,
                       **kwargs: Any) -> None:
        if model is not None:
            self.streamer.start(model, jsonable_config(args.to_sanitized_dict()))

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

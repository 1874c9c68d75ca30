"""What both framework callbacks do: build the averagers and the Monitor, update, evaluate."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ema_core.client import Monitor
from ema_core.ema import EMA
from ema_core.swa import SWA
from ema_core.swap import evaluate_all

EvalFn = Callable[[nn.Module], Mapping[str, float]]


@dataclass
class StreamSpec:
    """Settings shared by the Lightning and Hugging Face callbacks.

    Attributes:
        project: emaboard project name.
        run: run name (the same name resumes the run).
        server: emaboard server URL.
        decays: EMA decays, one shadow each (empty: no EMA).
        swa_start_step: optimizer steps before SWA starts averaging (None: no SWA).
        stats_every: weight statistics every this many optimizer steps.
        eval_fn: ``model -> {metric: value}`` run on the live model and every shadow at
            validation time (it should call ``model.eval()``).
        track_best: eval metric whose improvement saves a snapshot (None: no snapshots).
        track_mode: ``"max"`` or ``"min"`` for ``track_best``; None: by the metric's
            name, ``"min"`` for a loss or an error.
        track_averager: which averager to snapshot (default: the first).
        monitor_kwargs: extra keyword arguments of :class:`ema_core.client.Monitor`.
    """

    project: str
    run: str
    server: str = "http://127.0.0.1:8000"
    decays: Sequence[float] = (0.999,)
    swa_start_step: int | None = None
    stats_every: int = 50
    eval_fn: EvalFn | None = None
    track_best: str | None = None
    track_mode: str | None = None
    track_averager: str | None = None
    monitor_kwargs: dict[str, Any] = field(default_factory=dict)


class Streamer:
    """Owns the EMA/SWA averagers and the Monitor of one training run."""

    def __init__(self, spec: StreamSpec) -> None:
        if not spec.decays and spec.swa_start_step is None:
            raise ValueError("Nothing to average: pass decays=(0.999,) and/or swa_start_step")
        self.spec = spec
        self.averagers: list[EMA | SWA] = []
        self.monitor: Monitor | None = None

    def start(self, model: nn.Module, config: Mapping[str, Any]) -> None:
        """Create the averagers on ``model`` (once) and a Monitor (again after a finish)."""
        if self.monitor is not None and not self.monitor.finished:
            return
        spec = self.spec
        if not self.averagers and spec.decays:
            self.averagers.append(EMA(model, decays=tuple(spec.decays)))
        if spec.swa_start_step is not None and not any(isinstance(a, SWA)
                                                       for a in self.averagers):
            self.averagers.append(SWA(model, start_step=spec.swa_start_step))
        previous = self.monitor  # a second fit() of the same training continues its run
        if previous is not None:
            self.monitor = Monitor(
                spec.project, previous.run, spec.server, config=config, resume="allow",
                **{**spec.monitor_kwargs, "run_dir": previous.run_dir},
            )
        else:
            self.monitor = Monitor(spec.project, spec.run, spec.server, config=config,
                                   **spec.monitor_kwargs)
        self.monitor.watch(*self.averagers, stats_every=spec.stats_every)
        if spec.track_best is not None:
            self.monitor.track_best(spec.track_best, spec.track_mode, spec.track_averager)

    def update(self, model: nn.Module, step: int, scalars: Mapping[str, float]) -> None:
        """After an optimizer step: update every averager, then stream ``scalars``."""
        for averager in self.averagers:
            averager.update(model)
        if self.monitor is not None and not self.monitor.finished:
            self.monitor.step(step, scalars)

    def evaluate(self, model: nn.Module, step: int, eval_fn: EvalFn) -> dict[str, Any]:
        """Evaluate the live model and every shadow that has averaged something; stream it.

        ``evaluate_all`` leaves out averagers with nothing averaged yet and restores every
        module's training flag.
        """
        results = evaluate_all(model, self.averagers, lambda m: dict(eval_fn(m)))
        if self.monitor is not None and not self.monitor.finished:
            self.monitor.log_eval(step, results)
        return results

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Stream scalars under their own keys."""
        if self.monitor is not None and not self.monitor.finished and metrics:
            self.monitor.log(step, metrics)

    def finish(self, status: str) -> None:
        """Flush and mark the run ``finished`` or ``crashed`` (once)."""
        if self.monitor is not None:
            self.monitor.finish(status)


def jsonable_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every value JSON can't hold replaced by its ``repr`` (for run configs)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        try:
            json.dumps(value, allow_nan=False)
            out[str(key)] = value
        except (TypeError, ValueError):
            out[str(key)] = repr(value)
    return out

"""What both framework callbacks do: build the averagers and the Monitor, update, evaluate,
save and restore their state with the trainer's checkpoints."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ema_core.averager_state import load_averager_state, save_averager_state
from ema_core.client import Monitor
from ema_core.ema import EMA
from ema_core.exceptions import StateDictError
from ema_core.integrations._options import check_options
from ema_core.swa import SWA
from ema_core.swap import evaluate_all

EvalFn = Callable[[nn.Module], Mapping[str, float]]

logger = logging.getLogger(__name__)

STATE_FORMAT = "emaboard.callback"


@dataclass
class StreamSpec:
    """Settings shared by the Lightning and Hugging Face callbacks.

    Attributes:
        project: emaboard project name.
        run: run name of a new training (a resumed one continues its checkpoint's run).
        server: emaboard server URL (None: ``$EMABOARD_SERVER``, else the local default).
        decays: EMA decays, one shadow each (empty: no EMA).
        swa_start_step: optimizer steps before SWA starts averaging (None: no SWA).
        stats_every: weight statistics every this many optimizer steps.
        eval_fn: ``model -> {metric: value}`` run on the live model and every shadow at
            validation time (it should call ``model.eval()``).
        track_best: eval metric whose improvement saves a snapshot (None: no snapshots).
        track_mode: ``"max"`` or ``"min"`` for ``track_best``; None: by the metric's
            name, ``"min"`` for a loss or an error.
        track_averager: which averager to snapshot (default: the first).
        ema_kwargs: further :class:`~ema_core.ema.EMA` options (``use_warmup``, ...).
        swa_kwargs: further :class:`~ema_core.swa.SWA` options (``update_every``, ...).
        monitor_kwargs: further :class:`~ema_core.client.Monitor` options (``token``, ...).
    """

    project: str
    run: str
    server: str | None = None
    decays: Sequence[float] = (0.999,)
    swa_start_step: int | None = None
    stats_every: int = 50
    eval_fn: EvalFn | None = None
    track_best: str | None = None
    track_mode: str | None = None
    track_averager: str | None = None
    ema_kwargs: Mapping[str, Any] = field(default_factory=dict)
    swa_kwargs: Mapping[str, Any] = field(default_factory=dict)
    monitor_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.decays and self.swa_start_step is None:
            raise ValueError("Nothing to average: pass decays=(0.999,) and/or swa_start_step")
        self.ema_kwargs = check_options("ema_kwargs", self.ema_kwargs, decays=self.decays)
        self.swa_kwargs = check_options("swa_kwargs", self.swa_kwargs,
                                        start_step=self.swa_start_step)
        self.monitor_kwargs = check_options("monitor_kwargs", self.monitor_kwargs)


class Streamer:
    """Owns the EMA/SWA averagers and the Monitor of one training run.

    The averagers are built by :meth:`start`, once the trainer has put the model where it
    trains (device, dtype); a state restored from a checkpoint before that
    (:meth:`load_state_dict`) is applied to them then.
    """

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.averagers: list[EMA | SWA] = []
        self.monitor: Monitor | None = None
        self._restored: dict[str, Any] | None = None  # from a checkpoint, not applied yet

    def start(
        self, model: nn.Module, config: Mapping[str, Any], *,
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        """Build the averagers on ``model`` (once) and open the Monitor (again after a finish).

        A training restored from a checkpoint of ours — a state given to
        :meth:`load_state_dict`, or a ``checkpoint`` folder holding the files of
        :meth:`save_files` — continues its averagers and its server run; a fresh training
        starts a new run (``resume="never"``).

        Raises:
            StateDictError: the checkpoint holds other averagers than this callback builds.
        """
        if self.monitor is not None and not self.monitor.finished:
            return
        if not self.averagers:
            self.averagers = self._build(model)
        restored, self._restored = self._restored, None
        if checkpoint is not None:
            restored = {"run": load_averager_state(self.averagers, checkpoint).get("run")}
        elif restored is not None:
            for averager, state in zip(self.averagers, restored["averagers"], strict=True):
                averager.load_state_dict(state)
        self.monitor = self._open_monitor(config, restored)
        self.monitor.watch(*self.averagers, stats_every=self.spec.stats_every)
        if self.spec.track_best is not None:
            self.monitor.track_best(self.spec.track_best, self.spec.track_mode,
                                    self.spec.track_averager)

    def _build(self, model: nn.Module) -> list[EMA | SWA]:
        spec = self.spec
        built: list[EMA | SWA] = []
        if spec.decays:
            built.append(EMA(model, decays=tuple(spec.decays), **spec.ema_kwargs))
        if spec.swa_start_step is not None:
            built.append(SWA(model, start_step=spec.swa_start_step, **spec.swa_kwargs))
        return built

    def _open_monitor(
        self, config: Mapping[str, Any], restored: Mapping[str, Any] | None
    ) -> Monitor:
        """The checkpoint's run when the trainer resumed from one of ours; else the run of an
        earlier fit() of this callback; else a new run."""
        spec, options = self.spec, dict(self.spec.monitor_kwargs)
        run = None if restored is None else restored.get("run")
        previous = self.monitor
        if run is None and previous is not None:
            options.setdefault("run_dir", previous.run_dir)
            return Monitor(spec.project, previous.run, spec.server, config=config,
                           resume="allow", **options)
        if run is None:
            return Monitor(spec.project, spec.run, spec.server, config=config, **options)
        run_dir = run.get("run_dir")
        if run_dir and Path(run_dir).is_dir():  # its spool knows (or will learn) the run
            options.setdefault("run_dir", run_dir)
            return Monitor(spec.project, run["name"], spec.server, config=config,
                           resume="allow", **options)
        if run.get("server_name"):
            return Monitor(spec.project, run["server_name"], spec.server, config=config,
                           resume="allow", **options)
        logger.warning(
            "emaboard: the checkpoint's stream never reached the server and its run directory "
            "%s is not here: the resumed training streams to a new run", run_dir)
        return Monitor(spec.project, run["name"], spec.server, config=config, **options)

    def state_dict(self) -> dict[str, Any]:
        """The averagers' state and the run's identity, for the trainer's checkpoint."""
        if self._restored is not None:
            return dict(self._restored)  # restored, not applied yet: keep it as it came
        if not self.averagers:
            return {}  # nothing built yet (a checkpoint saved before training started)
        return {"format": STATE_FORMAT, "version": 1, "run": self._run_identity(),
                "averagers": [a.state_dict() for a in self.averagers]}

    def save_files(self, folder: str | os.PathLike[str], **extra: Any) -> None:
        """Write the averagers' state and the run's identity into ``folder`` as safetensors
        and JSON (:func:`~ema_core.averager_state.save_averager_state`); ``extra`` is stored
        with them."""
        save_averager_state(self.averagers, folder, {"run": self._run_identity(), **extra})

    def _run_identity(self) -> dict[str, Any] | None:
        monitor = self.monitor
        return None if monitor is None else {
            "name": monitor.run, "server_name": monitor.run_name, "run_dir": str(monitor.run_dir),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Keep a checkpoint's state until :meth:`start` builds the averagers.

        Raises:
            StateDictError: not a state of these callbacks, or of other averagers.
        """
        if not state:
            return  # saved before training started: nothing to restore
        if state.get("format") != STATE_FORMAT:
            raise StateDictError(
                f"Not an emaboard callback state (format={state.get('format')!r}): the "
                "checkpoint was written by another callback"
            )
        kinds = [s["kind"] for s in state["averagers"]]
        expected = (["ema"] if self.spec.decays else []) + (
            ["swa"] if self.spec.swa_start_step is not None else [])
        if kinds != expected:
            raise StateDictError(
                f"The checkpoint holds averagers {kinds}, this callback builds {expected}: "
                "pass the decays and swa_start_step the checkpointed training used"
            )
        self._restored = dict(state)

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

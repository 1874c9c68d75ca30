"""Monitor: stream a training run's metrics, weight statistics and best snapshots to emaboard.

Three lines in a plain PyTorch loop::

    mon = Monitor(project="cifar", run="resnet18-lr0.1", server="http://127.0.0.1:8000")
    mon.watch(ema, swa, stats_every=50)
    for step, batch in enumerate(loader):
        ...; opt.step(); ema.update(model); swa.update(model)
        mon.step(step, {"loss": loss.item()})
    mon.finish()

The training thread only appends tuples to a deque (microseconds, no lock, no network, no
disk); :class:`ema_core.sender.Sender` does the rest on two daemon threads, spooling to
``<run dir>/spool.sqlite`` whatever the server cannot take. See ``docs/client.md``.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from time import time
from types import TracebackType
from typing import Any

from ema_core._distributed import global_rank
from ema_core._intake import STEP_LIMIT, Intake, check_step
from ema_core._monitor_settings import resolve_settings
from ema_core._run_dir import config_json, dir_name, new_run_dir
from ema_core._sender_config import SenderStats, check_positive
from ema_core._stream import RunSummary, Stream
from ema_core._watched import Watched
from ema_core.metric_keys import posthoc_key
from ema_core.sender import Sender
from ema_core.spool import Spool
from ema_core.transport import ApiClient
from ema_core.wire import check_tags

__all__ = ["DEFAULT_SERVER", "Monitor", "default_run_dir"]

_STATUSES = ("finished", "crashed")
DEFAULT_SERVER = "http://127.0.0.1:8000"


def default_run_dir(project: str, run: str) -> Path:
    """``$EMABOARD_DIR/runs/<project>/<run>`` (``EMABOARD_DIR`` defaults to ``.emaboard``),
    each name encoded by :func:`ema_core._run_dir.dir_name`: one path component, never
    ``.``/``..``, two names never the same directory (``实验`` → ``%E5%AE%9E%E9%AA%8C``)."""
    root = Path(os.environ.get("EMABOARD_DIR", ".emaboard"))
    return root / "runs" / dir_name(project) / dir_name(run)


class Monitor:
    """Streams one run (project, name) to an emaboard server without slowing training down.

    Creating the Monitor never waits for the server: the run is created (or resumed) by the
    background sender, and points queue meanwhile. Points the server cannot take go to
    the run's spool and are replayed in order later (or by ``emaboard sync``).

    One training is one run, as in W&B: by default (``resume="never"``) a Monitor never
    writes into a run that exists already. When (project, run) is taken, the server creates
    ``run-2`` (``run-3``, …) and the sender logs the name (:attr:`run_name`); each new
    training also gets its own local directory. ``resume="allow"`` continues the run (and
    creates it when missing), ``resume="must"`` continues it and logs an error, keeping every
    point in the spool, when it does not exist. Resume exactly when the training itself
    resumes from a checkpoint (the Lightning and Hugging Face callbacks do that for you).

    Args:
        project: project name (non-empty).
        run: run name, unique within the project.
        server: base URL of the emaboard server (default ``$EMABOARD_SERVER``, else
            ``http://127.0.0.1:8000``); an explicit value wins over the environment.
        config: JSON-serializable hyperparameters stored with the run.
        tags: labels of the run (``"baseline"``, ``"bf16"``): each 1 to 64 characters, no
            comma; at most 32. A resumed run keeps its tags and gains these; the dashboard
            edits them and filters runs by them.
        resume: ``"never"`` (default), ``"allow"`` or ``"must"``, as above.
        token: bearer token, when the server has one (default ``$EMABOARD_TOKEN``).
        run_dir: local directory for the spool and snapshot files (default: the first of
            ``default_run_dir(project, run)``, ``…+2``, ``…+3``, … not used yet; with
            ``resume`` ``"allow"``/``"must"``, ``default_run_dir(project, run)`` itself, whose
            spool is continued).
        flush_interval_ms: send queued points this often, in milliseconds.
        max_batch_points: points per request.
        max_queue_points: points held in memory for the server; beyond, the spool.
        initial_backoff_s: first retry delay after a failure, in seconds.
        max_backoff_s: cap of the exponential retry delay, in seconds.
        request_timeout_s: timeout of one HTTP request, in seconds.
        finish_timeout_s: default bound of :meth:`finish`, in seconds.

    In a distributed job (DDP, FSDP2) create a Monitor on every rank, after
    ``init_process_group`` (or under ``torchrun``, which sets ``RANK``), and call it the same
    way everywhere: only rank 0 streams. On the other ranks it is inert (:attr:`active` is
    False): no spool, no thread, no network, points dropped at once; it still sets
    ``stats_every`` on watched averagers and, for a sharded averager under :meth:`track_best`,
    joins the gather of each snapshot that rank 0 takes (rank 0 decides, by one broadcast).

    Raises:
        ValueError: an empty name, a bad URL, bound or ``resume``; ``run_dir`` holding another
            run (or, with ``resume="never"``, an earlier training of this one); a ``config``
            over 64 KiB as JSON or nested deeper than 32 levels (the server's limits); a bad
            tag or more than 32 (:func:`ema_core.wire.check_tags`).
        TypeError: ``config`` is not JSON-serializable.
    """

    def __init__(
        self, project: str, run: str, server: str | None = None,
        config: Mapping[str, Any] | None = None, *, resume: str = "never",
        tags: Iterable[str] = (), token: str | None = None,
        run_dir: str | Path | None = None, flush_interval_ms: float = 500.0,
        max_batch_points: int = 5000, max_queue_points: int = 100_000,
        initial_backoff_s: float = 0.5, max_backoff_s: float = 30.0,
        request_timeout_s: float = 5.0, finish_timeout_s: float = 10.0,
    ) -> None:
        settings = resolve_settings(
            project, run, server, token, resume=resume, finish_timeout_s=finish_timeout_s,
            default_server=DEFAULT_SERVER, flush_interval_ms=flush_interval_ms,
            max_batch_points=max_batch_points, max_queue_points=max_queue_points,
            initial_backoff_s=initial_backoff_s, max_backoff_s=max_backoff_s,
            request_timeout_s=request_timeout_s,
        )
        self.project, self.run, self.server, self.resume = project, run, settings.server, resume
        self.finish_timeout_s = finish_timeout_s
        self.run_dir = (Path(run_dir) if run_dir is not None
                        else default_run_dir(project, run)).resolve()
        self._api = ApiClient(settings.server, token=settings.token, timeout_s=request_timeout_s)
        wire_config = config_json(config)  # NaN/±Inf as the API strings; TypeError if not JSON
        self.tags = check_tags([tags] if isinstance(tags, str) else tags)
        self.rank = global_rank()
        self._watched = Watched()
        self._finished = False
        self._stream: Stream | None = None
        self.spool: Spool | None = None
        self._sender: Sender | None = None
        if self.rank != 0:  # inert: no spool, no thread, no network; points are dropped
            self._api.close()
            self._summary = RunSummary(None)
            self._intake = Intake(deque(maxlen=0))
            self._inbox = self._intake.inbox
            return
        if run_dir is None and resume == "never":  # a directory of its own, made on rank 0
            self.run_dir = new_run_dir(default_run_dir(project, run)).resolve()
        self._stream = Stream(self._api, self.run_dir, (project, run), wire_config, resume,
                              self.tags, settings.sender)
        self.spool, self._sender = self._stream.spool, self._stream.sender
        self._summary = RunSummary(self._stream)
        self._intake = Intake(self._sender.inbox, self._sender.nudge, max_batch_points)
        self._inbox = self._intake.inbox
        atexit.register(self._finish_at_exit)

    @property
    def active(self) -> bool:
        """Whether this Monitor streams: True on rank 0 (or outside a distributed job)."""
        return self._sender is not None

    @property
    def run_name(self) -> str | None:
        """The run's name on the server once the sender created or resumed it (else None):
        ``run``, or ``run-2``, … when ``resume="never"`` found ``run`` taken."""
        return None if self._sender is None else self._sender.run_name

    @property
    def run_id(self) -> int | None:
        """The server's id of this run, once the sender created it (else None)."""
        return None if self._sender is None else self._sender.run_id

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` was called (the Monitor takes no more points)."""
        return self._finished

    @property
    def sender_stats(self) -> SenderStats:
        """Counters of the background sender (points posted, spooled, buffer high-water mark);
        all zero on an inactive rank."""
        return SenderStats() if self._sender is None else self._sender.stats

    def watch(
        self, *averagers: Any, stats_every: int = 50, batch_size: int | None = None
    ) -> None:
        """Stream the weight statistics of EMA/SWA averagers every ``stats_every`` steps.

        Sets ``averager.stats_every``; each :meth:`step` then forwards a new
        ``averager.last_stats`` (an identity check, no copy) as ``weights/…``, ``layer/…``
        and ``decay/…`` points at that step. A watched
        :class:`~ema_core.posthoc_ema.PostHocEMA` also has each snapshot file it wrote or
        writes uploaded (spooled first, so a crash loses none: ``emaboard sync``; the server
        keeps each once).

        In a distributed job call it on every rank: statistics of a sharded (FSDP2) model are
        a collective, so every rank's averager needs the same ``stats_every``.

        Each averager's kind, ``update_every`` and σ_rels (post-hoc EMA) go into the run's
        summary (``averagers``), with ``batch_size`` (samples per optimizer step, global under
        data parallelism) when given: the dashboard shows every averager's effective length
        (half-life in steps and samples, σ_rel equivalent) from them.

        Raises:
            ValueError: ``stats_every`` is not an int ≥ 1, or ``batch_size`` not an int ≥ 1.
            TypeError: an object without ``averager_names``/``last_stats``.
            RuntimeError: this Monitor streams, but this process is not rank 0 (it was
                created before ``init_process_group`` by a launcher that sets no ``RANK``).
        """
        if not isinstance(stats_every, int) or stats_every < 1:
            raise ValueError(f"Invalid stats_every {stats_every!r}: expected an int >= 1")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"Invalid batch_size {batch_size!r}: expected an int >= 1 (samples "
                             "per optimizer step) or None")
        if self._sender is not None and global_rank() != 0:
            raise RuntimeError(
                f"Monitor streams on rank {global_rank()}: it was created before "
                "torch.distributed.init_process_group; create it after, so that only rank 0 "
                "streams"
            )
        described = self._watched.add_all(averagers, stats_every, self._sender)
        self._summary.set(averagers={**self._summary.averagers, **described},
                          **({} if batch_size is None else {"batch_size": batch_size}))

    def step(self, step: int, scalars: Mapping[str, Any] | None = None) -> None:
        """Record training scalars at ``step`` and forward new weight statistics.

        Costs the caller microseconds: no network, no disk, no device sync.

        Args:
            step: the global step (int ≥ 0).
            scalars: name → number; a name without ``/`` is stored as ``train/<name>``.

        Raises:
            RuntimeError: called after :meth:`finish`.
            ValueError: a negative or non-integer step, an empty name.
            TypeError: a value that is not a real number.
        """
        step = self._check_step(step)
        now = time()
        if scalars:
            self._intake.put(step, scalars, now, train=True)
        if self._watched.entries:
            self._watched.forward_stats(self._intake.append, step, now)
        self._intake.nudge_when_full()

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Record any scalars at ``step`` under their own keys (e.g. ``"lr"``, ``"val/acc"``).

        Raises:
            RuntimeError, ValueError, TypeError: as :meth:`step`.
        """
        step = self._check_step(step)
        self._intake.put(step, metrics, time(), train=False)
        self._intake.nudge_when_full()

    def log_eval(self, step: int, results: Mapping[str, Mapping[str, Any]]) -> None:
        """Record dual-model evaluation results as ``eval/<model>/<metric>`` points.

        Args:
            step: the global step.
            results: model (``live`` or an averager name) → metric → value, as returned by
                ``ema_core.swap.evaluate_all``.

        Triggers :meth:`track_best` snapshots when a tracked metric improved. For a watched
        averager of a model with BatchNorm (an SWA) it also records ``bn_recomputed/<name>``:
        1 when its BatchNorm statistics were recomputed (``update_bn``) after its last averaged
        step, else 0 — the dashboard warns when an SWA was evaluated with stale statistics.

        Raises:
            RuntimeError, ValueError, TypeError: as :meth:`step`.
        """
        step = self._check_step(step)
        results = self._watched.averaged_only(results)
        described = self._summary.averagers
        if first := self._watched.first_averages(step, described):
            self._summary.set(averagers={**described, **first})
        self._intake.put(step, self._watched.eval_points(results), time(), train=False)
        jobs = self._watched.snapshot_jobs(step, results, streaming=self._sender is not None)
        if self._sender is not None:
            self._sender.snapshots.extend(jobs)
            self._sender.nudge()

    def track_best(
        self, metric: str, mode: str | None = None, averager: str | None = None
    ) -> None:
        """Save and upload a snapshot of ``averager`` each time its ``metric`` improves.

        On :meth:`log_eval`, when ``results[averager][metric]`` beats the best so far, the
        training thread copies the shadow to CPU (``ema_core.snapshot.snapshot_state``);
        the sender writes ``<run dir>/snapshots/<averager>-step<step>.safetensors`` and uploads it.

        Args:
            metric: the eval metric name, e.g. ``"accuracy"``.
            mode: ``"max"`` or ``"min"``; None (default): by the metric's name, ``"min"``
                for a loss or an error in any case (:func:`ema_core.metric_keys.default_mode`,
                the rule the server and the dashboard use).
            averager: a watched averager's name (default: the first watched one).

        Raises:
            ValueError: a bad ``mode``, or no watched averager has that name.
        """
        mode = self._watched.add_tracker(metric, mode, averager)
        if self._sender is not None:
            self._summary.set(primary_metric=metric, primary_mode=mode)

    def log_posthoc(self, step: int, results: Mapping[float, Mapping[str, Any]]) -> None:
        """Record what-if decay results as ``posthoc/<σ_rel>/<metric>`` points.

        Args:
            step: the global step of the snapshot the EMAs were rebuilt at.
            results: σ_rel → metric → value, as returned by
                :func:`ema_core.whatif.evaluate_posthoc`.

        Raises:
            RuntimeError, ValueError, TypeError: as :meth:`step`.
        """
        step = self._check_step(step)
        flat = {posthoc_key(float(sigma), metric): value for sigma, metrics in results.items()
                for metric, value in metrics.items()}
        self._intake.put(step, flat, time(), train=False)
        if self._sender is not None:
            self._sender.nudge()

    def finish(self, status: str | None = None, timeout_s: float | None = None) -> None:
        """Flush within ``timeout_s``, mark the run ``finished`` (or ``crashed``), stop.

        Whatever the server did not take stays in the spool for ``emaboard sync``. Never
        raises a network error; calling it again does nothing.

        Args:
            status: ``"finished"`` (default) or ``"crashed"``.
            timeout_s: bound on the whole call, in seconds (default ``finish_timeout_s``).

        Raises:
            ValueError: an unknown status or a non-positive timeout.
        """
        status = "finished" if status is None else status
        if status not in _STATUSES:
            raise ValueError(f"Invalid status {status!r}: expected 'finished' or 'crashed'")
        timeout_s = self.finish_timeout_s if timeout_s is None else timeout_s
        check_positive("timeout_s", timeout_s)
        if self._finished:
            return
        self._finished = True
        if self._stream is None:
            return  # an inactive rank: nothing to flush
        atexit.unregister(self._finish_at_exit)
        self._watched.stop_uploads()
        self._stream.finish(status, timeout_s)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish("crashed" if exc_type is not None else "finished")

    # -- internals ---------------------------------------------------------------------------

    def _check_step(self, step: Any) -> int:
        if self._finished:
            raise RuntimeError("Monitor used after finish(): create a new Monitor to log again")
        if step.__class__ is int and 0 <= step < STEP_LIMIT:  # the hot path: no call
            return int(step)
        return check_step(step)

    def _finish_at_exit(self) -> None:
        crashed = getattr(sys, "last_value", None) is not None
        self.finish("crashed" if crashed else "finished")


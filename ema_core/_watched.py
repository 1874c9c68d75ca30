"""The averagers a :class:`ema_core.client.Monitor` watches, and what it remembers of them
(private): the last statistics forwarded, the :meth:`~ema_core.client.Monitor.track_best`
requests, which averagers hold an average yet, and their descriptions for the run summary."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ema_core._best_tracker import BestTracker
from ema_core._distributed import rank_zero_decides
from ema_core._sender_config import SnapshotJob
from ema_core.metric_keys import bn_recomputed_key, default_mode, eval_key
from ema_core.sender import Sender
from ema_core.snapshot import snapshot_metadata, snapshot_state

logger = logging.getLogger(__name__)


class Watched:
    """The watched averagers of one Monitor.

    Attributes:
        entries: ``[averager, the last WeightStats forwarded]`` per watched averager; the
            Monitor's ``step`` walks them (an identity check per averager, no copy).
        trackers: one :class:`BestTracker` per ``track_best`` request.
    """

    def __init__(self) -> None:
        self.entries: list[list[Any]] = []
        self.trackers: list[BestTracker] = []
        self._unaveraged_warned: set[str] = set()
        self._uploading: list[tuple[Any, Any]] = []  # (PostHocEMA, its upload listener)

    def add(self, averager: Any, stats_every: int) -> None:
        """Watch ``averager``: set its ``stats_every``; its current statistics count as sent.

        Raises:
            TypeError: an object without ``averager_names``/``last_stats``.
        """
        if not hasattr(averager, "averager_names") or not hasattr(averager, "last_stats"):
            raise TypeError(f"Cannot watch {type(averager).__name__}: expected an EMA or SWA")
        averager.stats_every = stats_every
        self.entries.append([averager, averager.last_stats])

    def add_all(
        self, averagers: Iterable[Any], stats_every: int, sender: Sender | None
    ) -> dict[str, dict[str, Any]]:
        """Watch each of ``averagers`` (:meth:`add`); with a ``sender``, upload the snapshot
        files of each post-hoc EMA among them (:meth:`upload_snapshots`).

        Returns:
            Averager name → :func:`describe_averager`, for the run summary.

        Raises:
            TypeError: as :meth:`add`.
        """
        averagers = list(averagers)
        for averager in averagers:
            self.add(averager, stats_every)
            if sender is not None and hasattr(averager, "snapshot_listeners"):
                self.upload_snapshots(averager, sender)
        return {name: describe_averager(a) for a in averagers for name in a.averager_names}

    def forward_stats(
        self, append: Callable[[tuple[Any, ...]], None], step: int, now: float
    ) -> None:
        """Append ``(None, step, stats, now)`` for each watched averager whose
        ``last_stats`` is new since the last call (an identity check, no copy)."""
        for entry in self.entries:
            stats = entry[0].last_stats
            if stats is not entry[1]:
                entry[1] = stats
                if stats is not None:
                    append((None, step, stats, now))

    def upload_snapshots(self, averager: Any, sender: Sender) -> None:
        """Queue the upload of each snapshot file a PostHocEMA wrote, and of each it writes
        from now on (its writer thread calls the listener)."""
        def upload(record: Any) -> None:
            sender.add_snapshot_file(record.path, averager=record.averager, step=record.step,
                                     metadata={})

        for record in averager.snapshots:  # written before: uploaded too (the server keeps one)
            upload(record)
        averager.snapshot_listeners.append(upload)
        self._uploading.append((averager, upload))

    def stop_uploads(self) -> None:
        """Wait for queued post-hoc files (so they are uploaded too), then stop listening."""
        for averager, listener in self._uploading:
            try:
                averager.flush()
            except Exception as exc:  # finish() never raises for a snapshot
                logger.warning("emaboard: a post-hoc snapshot could not be written: %s", exc)
            if listener in averager.snapshot_listeners:
                averager.snapshot_listeners.remove(listener)
        self._uploading = []

    def by_name(self) -> dict[str, Any]:
        """Averager name (e.g. ``"ema_0.999"``) → the averager object holding it."""
        return {name: entry[0] for entry in self.entries for name in entry[0].averager_names}

    def add_tracker(self, metric: str, mode: str | None, averager: str | None) -> str:
        """Record a ``track_best`` request; its mode (``mode`` or the metric's default).

        Raises:
            ValueError: a bad ``mode``, or no watched averager has that name.
        """
        if mode is None:
            mode = default_mode(metric)
        if mode not in ("max", "min"):
            raise ValueError(f"Invalid mode {mode!r}: expected 'max', 'min' or None")
        names = self.by_name()
        if not names:
            raise ValueError("track_best() needs a watched averager: call watch(ema) first")
        name = averager if averager is not None else next(iter(names))
        if name not in names:
            raise ValueError(f"Unknown averager {name!r}: expected one of {sorted(names)}")
        self.trackers.append(BestTracker(metric, mode, names[name], name))
        return mode

    def averaged_only(
        self, results: Mapping[str, Mapping[str, Any]]
    ) -> Mapping[str, Mapping[str, Any]]:
        """``results`` without watched averagers that hold no average yet (warned once)."""
        empty = {name for entry in self.entries if not getattr(entry[0], "has_averaged", True)
                 for name in entry[0].averager_names} & set(results)
        if not empty:
            return results
        for name in sorted(empty - self._unaveraged_warned):
            logger.warning("emaboard: not logging eval of %s: it holds no average yet (an SWA "
                           "before its first averaged step)", name)
        self._unaveraged_warned |= empty
        return {model: metrics for model, metrics in results.items() if model not in empty}

    def first_averages(
        self, step: int, described: Mapping[str, Any]
    ) -> dict[str, dict[str, Any]]:
        """The summary's averager descriptions that now hold an average and did not before,
        marked ``averaged`` from ``step``."""
        return {name: {**described[name], "averaged": True, "averaged_from": step}
                for entry in self.entries if getattr(entry[0], "has_averaged", True)
                for name in entry[0].averager_names
                if name in described and not described[name].get("averaged", True)}

    def eval_points(self, results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """``eval/<model>/<metric>`` → value for ``results``, with :meth:`bn_recomputed`."""
        flat: dict[str, Any] = {eval_key(model, metric): value
                                for model, metrics in results.items()
                                for metric, value in metrics.items()}
        flat.update(self.bn_recomputed(results))
        return flat

    def bn_recomputed(self, results: Mapping[str, Any]) -> dict[str, float]:
        """``bn_recomputed/<name>`` for each evaluated averager that tracks its BatchNorm
        statistics (an SWA of a model with BatchNorm): 1.0 when recomputed after its last
        averaged step, else 0.0."""
        flags: dict[str, float] = {}
        for entry in self.entries:
            recomputed = getattr(entry[0], "batchnorm_recomputed", None)
            if recomputed is not None:
                flags.update({bn_recomputed_key(name): float(recomputed)
                              for name in entry[0].averager_names if name in results})
        return flags

    def snapshot_jobs(
        self, step: int, results: Mapping[str, Mapping[str, Any]], *, streaming: bool
    ) -> list[SnapshotJob]:
        """A snapshot for each tracker whose metric improved in ``results``.

        ``streaming`` is False on an inactive rank: nothing is returned, but a sharded
        averager still joins the gather of each snapshot rank 0 takes (rank 0 decides).
        """
        jobs = []
        for tracker in self.trackers:
            metrics = results.get(tracker.name, {})
            improved = (tracker.metric in metrics
                        and tracker.improved(float(metrics[tracker.metric])))
            sharded = bool(getattr(tracker.averager, "sharded", False))
            if sharded:  # every rank joins the gather when rank 0's metric improved
                improved = rank_zero_decides(improved)
            if not improved:
                continue
            tracker.best = float(metrics.get(tracker.metric, tracker.best))
            if not streaming and not sharded:
                continue
            tensors = snapshot_state(tracker.averager, tracker.name)  # a gather when sharded
            if not streaming:
                continue
            values = {str(k): float(v) for k, v in metrics.items()}  # 0-d tensors, NumPy
            jobs.append(SnapshotJob(
                averager=tracker.name, step=step, metric=tracker.metric, value=tracker.best,
                tensors=tensors,
                metadata=snapshot_metadata(tracker.averager, tracker.name, metrics=values),
            ))
        return jobs


def describe_averager(averager: Any) -> dict[str, Any]:
    """What the dashboard needs for an averager: its effective length, and whether it holds an
    average yet (``averaged``; ``averaged_from``, the first eval step that saw one, is added
    by :meth:`ema_core.client.Monitor.log_eval`) (JSON-ready)."""
    out: dict[str, Any] = {"kind": str(getattr(averager, "kind", "averager")),
                           "update_every": int(getattr(averager, "update_every", 1)),
                           "averaged": bool(getattr(averager, "has_averaged", True))}
    if getattr(averager, "sigma_rels", None) is not None:
        out["sigma_rels"] = [float(s) for s in averager.sigma_rels]
        out["time_unit"] = str(getattr(averager, "time_unit", "steps"))
    return out

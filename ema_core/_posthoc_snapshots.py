"""The snapshot files of a post-hoc EMA (private).

:class:`PosthocSnapshotFiles` owns the files a :class:`~ema_core.posthoc_ema.PostHocEMA`
writes every ``snapshot_every`` steps: each shadow is copied to CPU in ``snapshot_dtype`` on
the calling thread (copied integer buffers keep their dtype; a sharded shadow is gathered to
rank 0, every rank joining), named ``<averager>-<step:010d>.safetensors``, given the post-hoc
metadata (``snapshot_kind``, key-and-shape ``fingerprint``, ``copied_keys``, ``wall_time``)
and written by a :class:`~ema_core._snapshot_writer.SnapshotWriter` thread, which then
records it and tells the listeners (the Monitor's uploads). Rank 0 alone writes and records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from ema_core._distributed import global_rank, is_dtensor
from ema_core._snapshot_writer import SnapshotWriter
from ema_core.posthoc_files import POSTHOC_KIND, PosthocSnapshot, parse_posthoc_metadata
from ema_core.snapshot import snapshot_metadata, snapshot_state, write_snapshot

logger = logging.getLogger(__name__)

_Job = tuple[dict[str, Tensor], dict[str, str], Path]


class PosthocAverager(Protocol):
    """What :meth:`PosthocSnapshotFiles.take` reads of a PostHocEMA (at each snapshot)."""

    snapshot_dir: Path
    snapshot_dtype: torch.dtype
    copied_keys: list[str]  # copied (not averaged) tensors: kept in their own dtype
    step: int
    snapshot_listeners: list[Callable[[PosthocSnapshot], None]]  # told on the writer thread

    @property
    def averager_names(self) -> tuple[str, ...]: ...

    def shadow_state_dict(self, name: str | None = None) -> dict[str, Tensor]: ...

    def averager_info(self, name: str | None = None) -> Mapping[str, str | int | float]: ...


class PosthocSnapshotFiles:
    """Snapshot files of one post-hoc EMA: taken, written in the background, recorded.

    Attributes:
        writer: the background writer (``flush``, ``close``: :class:`SnapshotWriter`).

    Args:
        max_pending_writes: snapshot steps whose files may be queued at once.
    """

    def __init__(self, max_pending_writes: int) -> None:
        self._records: list[PosthocSnapshot] = []
        self.writer = SnapshotWriter(max_pending_writes)

    def take(self, averager: PosthocAverager) -> list[Path]:
        """Copy every shadow of ``averager`` at its ``step`` into ``averager.snapshot_dir``.

        Returns:
            The paths the files will have (none off rank 0).
        """
        sharded = any(is_dtensor(t) for t in averager.shadow_state_dict().values())
        if not sharded and global_rank() != 0:
            return []  # data parallel: every rank holds the same shadows; rank 0 writes them
        jobs: list[_Job] = []
        for name in averager.averager_names:
            tensors = _tensors(averager, name, sharded)  # a sharded one: every rank joins
            if global_rank() != 0:
                continue
            metadata = snapshot_metadata(averager, name)
            metadata.update(
                snapshot_kind=POSTHOC_KIND, fingerprint=fingerprint(tensors),
                copied_keys=json.dumps(averager.copied_keys), wall_time=repr(time.time()),
            )
            path = averager.snapshot_dir / f"{name}-{averager.step:010d}.safetensors"
            jobs.append((tensors, metadata, path))
        if jobs:
            self.writer.submit(lambda: self._write(jobs, averager))
        return [path for _, _, path in jobs]

    def _write(self, jobs: list[_Job], averager: PosthocAverager) -> None:
        """On the writer thread: write the files, record them, tell the listeners."""
        for tensors, metadata, path in jobs:
            write_snapshot(tensors, metadata, path)
            record = parse_posthoc_metadata(metadata, path)
            self._records.append(record)
            for listener in list(averager.snapshot_listeners):
                try:
                    listener(record)
                except Exception:  # a listener must not lose the snapshot
                    logger.exception("A post-hoc snapshot listener failed on %s", path)

    def written(self) -> list[PosthocSnapshot]:
        """The snapshots written so far, oldest first (waits for queued writes first).

        Raises:
            OSError: a queued write failed (:meth:`SnapshotWriter.flush`).
        """
        self.writer.flush()
        return list(self._records)

    def state(self) -> list[dict[str, Any]]:
        """The written snapshots as JSON-ready ``{"path", "metadata"}`` entries."""
        return [{"path": str(s.path), "metadata": dict(s.metadata)} for s in self.written()]

    def load_state(self, entries: list[dict[str, Any]]) -> None:
        """Replace the record with :meth:`state`'s ``entries`` (after queued writes end)."""
        self.writer.flush()
        self._records = [parse_posthoc_metadata(s["metadata"], Path(s["path"]))
                         for s in entries]


def _tensors(averager: PosthocAverager, name: str, sharded: bool) -> dict[str, Tensor]:
    """CPU copies in ``snapshot_dtype`` (copied tensors keep theirs); a sharded shadow is
    gathered to rank 0 (``{}`` elsewhere)."""
    copied, dtype = set(averager.copied_keys), averager.snapshot_dtype
    if sharded:
        return {key: t if key in copied else t.to(dtype)
                for key, t in snapshot_state(averager, name).items()}
    return {
        key: t.detach().to("cpu", dtype=dtype if key not in copied else t.dtype, copy=True,
                           memory_format=torch.contiguous_format)
        for key, t in averager.shadow_state_dict(name).items()
    }


def fingerprint(tensors: dict[str, Tensor]) -> str:
    """16 hex digits of SHA-256 over the keys and (full) shapes: equal for one model."""
    text = "".join(f"{key}:{tuple(t.shape)};" for key, t in sorted(tensors.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]

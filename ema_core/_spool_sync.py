"""Uploading what a spool kept, for ``emaboard sync`` (private).

The points and snapshot halves of :func:`ema_core.spool.sync_spool`: points go in ``seq``
order, each batch deleted from the spool once the server accepted it (so an interrupted
sync resumes where it stopped), the batch halved on 413; snapshot files are looked for
next to the spool when the run directory moved since the training, and dropped, logged
and counted when they are nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ema_core.transport import ApiClient, PayloadTooLarge

if TYPE_CHECKING:  # spool.sync_spool calls this module
    from ema_core.spool import Spool, SpooledPoint, SyncResult

logger = logging.getLogger(__name__)


def sync_points(
    api: ApiClient, spool: Spool, run_id: int, result: SyncResult, batch: int
) -> None:
    """Post the spool's points in ``seq`` order, ``batch`` at a time (halved on 413), each
    batch deleted from the spool once the server took it.

    Raises:
        PayloadTooLarge: the server refused a single point.
        TransportError: any other failure (what was sent stays sent).
    """
    while rows := spool.head_points(batch):
        try:
            answer = api.post_points(run_id, without_seq(rows))
        except PayloadTooLarge:
            if batch == 1:
                raise
            batch = max(1, batch // 2)
            continue
        spool.delete_points_through(rows[-1][0])
        result.points_sent += len(rows)
        result.points_inserted += answer.inserted
        result.points_conflicting += answer.conflicts


def sync_snapshots(api: ApiClient, spool: Spool, run_id: int, result: SyncResult) -> None:
    """Upload the spool's pending snapshot files (looked for next to the spool when the run
    directory moved); a file found nowhere is logged, counted and dropped.

    Raises:
        TransportError: the server failed (what was sent stays sent).
    """
    for snap in spool.pending_snapshots():
        if not snap.path.is_file():  # the run directory moved: look next to the spool
            snap = replace(snap, path=spool.path.parent / "snapshots" / snap.path.name)
        if not snap.path.is_file():
            logger.warning("Snapshot file %s is missing; dropping it from the spool", snap.path)
            result.snapshots_missing += 1
        else:
            api.upload_snapshot(
                run_id, snap.path, averager=snap.averager, step=snap.step,
                metric=snap.metric, value=snap.value, metadata=snap.metadata,
            )
            result.snapshots_sent += 1
        spool.delete_snapshot(snap.id)


def without_seq(rows: Sequence[SpooledPoint]) -> list[tuple[str, int, float, float]]:
    return [(k, s, v, t) for _, k, s, v, t in rows]

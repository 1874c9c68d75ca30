"""Domain errors of the server: raised by queries and writes, mapped to HTTP answers in one
place (:mod:`emaboard_server.app.api.errors`), so no route tests for ``None`` itself.

Class tree (HTTP status of the answer)::

    LookupError
     └── NotFound                 404, the message is the API's fixed phrase
          ├── RunNotFound         "Run not found"
          │    └── RunMissing     "Run not found: resume='must' continues an existing run ..."
          ├── SnapshotNotFound    "Snapshot not found"
          └── NoPosthocSnapshots  "No post-hoc EMA snapshots in this run"
    SnapshotConflict              409 "Snapshot conflict: run 1 already has snapshot 7 ..."
    PosthocUnavailable            409 "Cannot rebuild from the stored snapshots: ..."
    StorageFull                   507 "Insufficient storage: the disk holding ... is full ..."
    PointExists                   never answered: ingest stores the batch again with
                                  ON CONFLICT DO NOTHING (writes.store_points)
    ValueError
     ├── InvalidPosthocUpload              400 "Invalid post-hoc snapshot: ..."
     ├── ema_core InvalidDecayError        422 "Invalid sigma_rel 0.3: ..." (post-hoc)
     ├── snapshot_files.InvalidSnapshot    400 "File is not a valid safetensors file: ..."
     ├── snapshot_files.SnapshotTooLarge   413 "Upload too large: ..."
     ├── schemas.ObjectTooLarge            422 "Invalid field 'config': ... over max_object_bytes"
     └── InvalidTags                       422 "Invalid field 'tags': Too many tags: 40 > 32"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emaboard_server.app.models import Snapshot

RUN_NOT_FOUND = "Run not found"
SNAPSHOT_NOT_FOUND = "Snapshot not found"
NO_POSTHOC = "No post-hoc EMA snapshots in this run"


class NotFound(LookupError):
    """A run or snapshot that the request names does not exist."""


class RunNotFound(NotFound):
    """No run has this id."""

    def __init__(self) -> None:
        super().__init__(RUN_NOT_FOUND)


class RunMissing(RunNotFound):
    """``resume="must"`` names a run (project, name) that does not exist."""

    def __init__(self, project: str, name: str) -> None:
        LookupError.__init__(
            self, f"{RUN_NOT_FOUND}: resume='must' continues an existing run and "
            f"{project}/{name} does not exist; pass resume='allow' to create it"
        )


class SnapshotNotFound(NotFound):
    """The run has no snapshot with this id (or its file is gone)."""

    def __init__(self) -> None:
        super().__init__(SNAPSHOT_NOT_FOUND)


class NoPosthocSnapshots(NotFound):
    """The run has no post-hoc EMA snapshots."""

    def __init__(self) -> None:
        super().__init__(NO_POSTHOC)


class PosthocUnavailable(Exception):
    """The stored post-hoc snapshots cannot be combined (two models in one run, a broken
    file)."""

    def __init__(self, reason: object) -> None:
        super().__init__(f"Cannot rebuild from the stored snapshots: {reason}")


class InvalidPosthocUpload(ValueError):
    """An uploaded post-hoc snapshot whose metadata is incomplete or contradicts the form."""


class SnapshotConflict(Exception):
    """Another file is stored for the same (run, averager, step)."""

    def __init__(self, existing: Snapshot) -> None:
        self.existing = existing
        super().__init__(
            f"Snapshot conflict: run {existing.run_id} already has snapshot {existing.id} for "
            f"averager {existing.averager!r} at step {existing.step} with another file "
            f"(sha256 {existing.sha256[:16]}…): delete it first (DELETE /api/runs/"
            f"{existing.run_id}/snapshots/{existing.id}) or upload under another step"
        )


class PointExists(Exception):
    """PostgreSQL's ``COPY`` met a point that was stored already; its transaction is
    aborted (:mod:`emaboard_server.app.ingest_postgres`)."""


class StorageFull(Exception):
    """A write ran out of disk space (ENOSPC/EDQUOT on a file, SQLite's "database or disk is
    full", PostgreSQL's ``disk_full``); its transaction was rolled back."""

    def __init__(self, place: str) -> None:
        super().__init__(
            f"Insufficient storage: the disk holding {place} is full, so nothing of this "
            "request was stored; free space there and send it again (emaboard clients keep "
            "what was not stored and retry)")


class InvalidTags(ValueError):
    """A run's tags break a rule once merged with the stored ones (``ema_core.wire.check_tags``)."""

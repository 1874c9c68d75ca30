"""Every write of the API: runs, metric points, snapshots.

One function per write, each one transaction (under SQLite's write lock), with the snapshot
files kept consistent with their rows (a stored file whose row could not be written is
removed). Routes call them in a worker thread and get the result in API form, or a domain
error (:mod:`emaboard_server.app.exceptions`, ``ObjectTooLarge``, ``InvalidSnapshot``,
``SnapshotTooLarge``) that :mod:`emaboard_server.app.api.errors` answers. A full disk is
:class:`~emaboard_server.app.exceptions.StorageFull` (507), whatever storage ran out.
"""

from __future__ import annotations

import logging
import time
from typing import IO, Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from emaboard_server.app import crud, ingest
from emaboard_server.app.exceptions import PointExists, RunNotFound
from emaboard_server.app.hub import points_body
from emaboard_server.app.posted import PostedRows
from emaboard_server.app.posthoc import POSTHOC_KIND, check_posthoc_upload, thin_posthoc
from emaboard_server.app.schemas import MetricBatch, check_object_size
from emaboard_server.app.serialize import runs_dicts, snapshot_dict
from emaboard_server.app.snapshot_files import remove_files, remove_run_folder, store_upload
from emaboard_server.app.state import AppState
from emaboard_server.app.storage_full import guard_storage

logger = logging.getLogger(__name__)


@guard_storage
def create_or_resume_run(
    state: AppState, *, project: str, name: str, config: dict[str, Any] | None,
    resume: str = "allow", tags: list[str] | None = None, creation_id: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Create the run (project, name) or resume it, its config merged into the stored one.

    Args:
        resume: what to do when the run exists (``crud.get_or_create_run``): ``"allow"``
            resumes it, ``"never"`` creates ``name-2`` (…), ``"must"`` requires it.
        creation_id: the client's id of the training; the run of the project that has it
            is resumed, whatever ``name`` and ``resume`` say (a retried create).

    Returns:
        The run in API form (its ``name`` the one it got) and whether it was created.

    Raises:
        ObjectTooLarge: ``config``, or the merged config, is over ``max_object_bytes``.
        RunMissing: ``resume="must"`` and no such run.
        InvalidTags: the resumed run would hold more than ``MAX_TAGS`` tags.
    """
    limit = state.settings.max_object_bytes
    if config is not None:
        check_object_size("config", config, limit)

    def write() -> tuple[dict[str, Any], bool]:
        with state.db.writing() as session:
            run, created = crud.get_or_create_run(session, project=project, name=name,
                                                  config=config, resume=resume, tags=tags,
                                                  creation_id=creation_id)
            if config:  # a resumed run's config is merged: the result must fit too
                check_object_size("config", run.config, limit, merged_with="the stored config")
            return runs_dicts(session, [run])[0], created

    try:
        return write()
    except IntegrityError:  # another server process created (project, name), or a run with
        return write()  # this creation id (a concurrent retry), meanwhile


@guard_storage
def update_run(
    state: AppState, *, run_id: int, status: str | None, summary: dict[str, Any] | None,
    tags: list[str] | None = None,
) -> dict[str, Any]:
    """Set the run's status, merge ``summary`` into its summary and/or replace its ``tags``;
    the run in API form.

    Raises:
        RunNotFound: No run has this id.
        ObjectTooLarge: ``summary``, or the merged summary, is over ``max_object_bytes``
            (nothing is stored).
    """
    limit = state.settings.max_object_bytes
    if summary is not None:
        check_object_size("summary", summary, limit)
    with state.db.writing() as session:
        run = crud.require_run(session, run_id=run_id)
        crud.update_run(session, run=run, status=status, summary=summary, tags=tags)
        if summary:
            check_object_size("summary", run.summary, limit, merged_with="the stored summary")
        return runs_dicts(session, [run])[0]


@guard_storage
def delete_run(state: AppState, *, run_id: int) -> str:
    """Delete the run, its points, its snapshot rows and files; return its project.

    Raises:
        RunNotFound: No run has this id.
    """
    with state.db.writing() as session:
        run = crud.require_run(session, run_id=run_id)
        project = run.project
        paths = crud.delete_run(session, run=run)
    remove_files(state.settings.data_dir, paths)
    remove_run_folder(state.settings.data_dir, run_id)
    return project


@guard_storage
def store_points(
    state: AppState, *, run_id: int, batch: MetricBatch
) -> tuple[ingest.Inserted, str | None]:
    """Store a batch of points (a retried (key, step) is not stored twice).

    With live fan-out on, the new points are also stored for the other server processes
    in the same transaction (:meth:`Fanout.emit`).

    Returns:
        The new rows and the conflicts (points at a stored (key, step) with another value),
        and the new points serialized for a ``points`` message (:func:`points_body`) when a
        websocket of this process or, with fan-out, of another may want them (else None).

    Raises:
        RunNotFound: No run has this id.
    """
    now = time.time()
    if not state.db.is_sqlite and batch.points:
        try:
            return _store_posted(state, run_id, batch, now)
        except PointExists:  # a retry, or a point posted twice: the careful way below
            pass
    prepared = ingest.prepare(batch.points, now)
    try:
        return _store(state, run_id, prepared, batch, now, copy=True)
    except PointExists as exc:
        logger.warning("run %d: a posted point existed although ingest had checked (%s); "
                       "storing the batch with ON CONFLICT DO NOTHING instead", run_id, exc)
        return _store(state, run_id, prepared, batch, now, copy=False)


def _store(state: AppState, run_id: int, prepared: ingest.Batch, batch: MetricBatch,
           now: float, *, copy: bool) -> tuple[ingest.Inserted, str | None]:
    with state.db.ingesting() as connection:
        known = ingest.touch_and_read_series(connection, run_id=run_id, batch=prepared,
                                             now=now)
        if known is None:
            raise RunNotFound
        inserted = ingest.insert_points(connection, run_id, prepared, known=known, copy=copy)
        as_posted = prepared.as_posted and len(inserted.rows) == len(batch.points)
        return inserted, _emit(state, connection, run_id, inserted, batch if as_posted else None)


def _store_posted(state: AppState, run_id: int, batch: MetricBatch,
                  now: float) -> tuple[ingest.Inserted, str | None]:
    """PostgreSQL: :func:`~emaboard_server.app.ingest_postgres.copy_posted`, the
    ``latest_metric`` rows computed while PostgreSQL stores the points.

    Raises:
        PointExists: A point of the batch is stored already, or posted twice.
    """
    from emaboard_server.app.ingest_postgres import copy_posted  # psycopg: [postgres]

    with state.db.ingesting() as connection:
        with copy_posted(connection, run_id=run_id, points=batch.points, now=now) as columns:
            latest = columns.latest_rows(run_id)
        ingest.upsert_latest(connection, latest)
        inserted = ingest.Inserted(PostedRows(columns), [])  # every point: COPY took them
        return inserted, _emit(state, connection, run_id, inserted,
                               batch if columns.as_posted else None)


def _emit(state: AppState, connection: Connection, run_id: int, inserted: ingest.Inserted,
          posted: MetricBatch | None) -> str | None:
    """The new points serialized for a ``points`` message (from ``posted`` when it holds
    exactly them), when a websocket of this process or (with fan-out) of another may want
    them, and sent to the other processes."""
    if not inserted.rows or not (state.fanout.enabled or state.hub.has_subscribers(run_id)):
        return None
    body = points_body(inserted.rows, None if posted is None else posted.points)
    state.fanout.emit(connection, run_id, body, kind="points")
    return body


@guard_storage
def create_snapshot(
    state: AppState, *, run_id: int, file: IO[bytes], fields: dict[str, Any],
    filename: str = "upload",
) -> tuple[dict[str, Any], bool]:
    """Store an uploaded safetensors file and its row, unless (run, averager, step) holds the
    same file already (a retry: the new copy is removed).

    A post-hoc EMA snapshot (``snapshot_kind = "posthoc"`` in the file's metadata) is checked
    (:func:`emaboard_server.app.posthoc.check_posthoc_upload`), keeps its file's own metadata
    over the client's, and may make the server thin the run's older post-hoc snapshots
    (:func:`emaboard_server.app.posthoc.thin_posthoc`), in the same transaction.

    Returns:
        The snapshot in API form and whether it was created.

    Args:
        state: The server's state.
        run_id: The run it belongs to.
        file: The upload, at its start.
        fields: ``averager``, ``step``, ``metric``, ``value`` and ``meta`` (the client's
            metadata, merged over the file's own ``__metadata__``).
        filename: The upload's name, for messages only (never a path).

    Raises:
        RunNotFound: No run has this id (checked before the file is received, and again
            when the row is written).
        InvalidSnapshot: Not a safetensors file. SnapshotTooLarge: over ``max_upload_bytes``.
        ObjectTooLarge: The merged metadata is over ``max_object_bytes``.
        SnapshotConflict: (run, averager, step) holds another file.
        InvalidPosthocUpload: A post-hoc snapshot lacks an entry or contradicts the form.
    """
    settings = state.settings
    with state.db.reading() as session:
        crud.require_run(session, run_id=run_id)
    path, sha256, size, file_meta = store_upload(
        file, data_dir=settings.data_dir, run_id=run_id, max_bytes=settings.max_upload_bytes
    )
    try:
        kind = check_posthoc_upload(file_meta, averager=fields["averager"],
                                    step=fields["step"], name=filename)
        meta = ({**fields["meta"], **file_meta} if kind == POSTHOC_KIND  # the file's win
                else {**file_meta, **fields["meta"]})
        check_object_size("metadata", meta, settings.max_object_bytes,
                          merged_with="the file's __metadata__")
        row = {**fields, "meta": meta, "sha256": sha256, "size_bytes": size,
               "stored_path": path, "kind": kind}
        try:
            snapshot, created, thinned = _insert_snapshot(state, run_id, row)
        except IntegrityError:  # another server process stored the key meanwhile
            snapshot, created, thinned = _insert_snapshot(state, run_id, row)
    except BaseException:
        remove_files(settings.data_dir, [path])
        raise
    remove_files(settings.data_dir, thinned if created else [path])
    return snapshot, created


def _insert_snapshot(
    state: AppState, run_id: int, row: dict[str, Any]
) -> tuple[dict[str, Any], bool, list[str]]:
    """(snapshot in API form, created, files of post-hoc snapshots thinned away)."""
    with state.db.writing() as session:
        run = crud.require_run(session, run_id=run_id)
        snapshot, created = crud.create_snapshot(session, run=run, fields=row)
        thinned = (thin_posthoc(session, run_id, state.settings)
                   if created and row["kind"] == POSTHOC_KIND else [])
        return snapshot_dict(snapshot), created, thinned


@guard_storage
def delete_snapshot(state: AppState, *, run_id: int, snapshot_id: int) -> None:
    """Delete a snapshot's row, then its file.

    Raises:
        RunNotFound: No run has this id. SnapshotNotFound: The run has no such snapshot.
    """
    with state.db.writing() as session:
        snapshot = crud.require_snapshot(session, run_id=run_id, snapshot_id=snapshot_id)
        path = crud.delete_snapshot(session, snapshot=snapshot)
    remove_files(state.settings.data_dir, [path])

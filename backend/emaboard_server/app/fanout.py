"""Live updates between server processes on one PostgreSQL database: LISTEN/NOTIFY.

Each process's :class:`~emaboard_server.app.hub.Hub` serves only its own websockets. With
several processes (``emaboard serve --workers N``), a write on one must reach the websockets
of the others. The writer, inside its transaction, stores the websocket message it is about
to push in ``live_event`` (an UNLOGGED table: nothing of it survives a crash, and it needs
none of the write-ahead log) and sends ``NOTIFY emaboard_live, '<worker> <event id> <topic>'``
(at most ~60 bytes, far under NOTIFY's 8,000-byte limit). PostgreSQL delivers it at commit,
in commit order. Every other process listens on its own connection; for a topic its
websockets watch, it reads the message by id and pushes it, the same text the writer pushed
to its own websockets.

A lost listening connection (a restarted database, a network cut, ``pg_terminate_backend``)
raises on the next read or on the liveness query sent every :data:`PING_S` seconds (TCP
keepalives cover a peer that vanished without a word);
the listener reconnects (backoff up to 5 s) and then sends ``{"type": "resync"}`` to every
websocket of its process: notifications sent while it was away are lost, and a resync makes
the page re-read over REST. A message read after :data:`RETENTION_S` (events older than that
are deleted) is replaced by a resync too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from emaboard_server.app.core.db import Database
from emaboard_server.app.hub import Hub, Topic

logger = logging.getLogger(__name__)

CHANNEL = "emaboard_live"
APPLICATION_NAME = "emaboard-listen"  # the listening connection, in pg_stat_activity
PING_S = 5.0
RETENTION_S = 30.0
MAX_RECONNECT_DELAY_S = 5.0
_EMIT = (
    "WITH event AS (INSERT INTO live_event (topic, project, kind, body, created_at) "
    "VALUES (%s, %s, %s, %s, %s) RETURNING id) "
    "SELECT pg_notify('" + CHANNEL + "', %s || ' ' || id || ' ' || %s) FROM event"
)
_READ = "SELECT id, project, kind, body FROM live_event WHERE id = %s"
_CLEANUP = "DELETE FROM live_event WHERE created_at < %s"


def topic_key(topic: str) -> Topic:
    """A topic as the hub keys it: a run id, or ``"runs"``."""
    return int(topic) if topic.isdigit() else topic


class Fanout:
    """The sending and the listening side of one process; inert unless ``enabled``.

    Args:
        hub: This process's websocket hub.
        db: The database (PostgreSQL when enabled).
        enabled: Whether other processes share the database (``Settings.live_fanout``).
    """

    def __init__(self, hub: Hub, db: Database, *, enabled: bool) -> None:
        self.hub, self.db, self.enabled = hub, db, enabled
        self.worker_id = uuid.uuid4().hex[:12]
        self.listening = asyncio.Event()
        self.reconnects = 0
        self._task: asyncio.Task[None] | None = None

    def emit(self, connection: Connection, topic: Topic, body: str, *, kind: str,
             project: str | None = None) -> None:
        """Store a message for the other processes and notify them at commit.

        Args:
            connection: A connection inside the write's transaction (the message is sent
                only if it commits).
            topic: A run id or ``"runs"``.
            body: ``kind="points"``: the inside of the points array; ``kind="message"``:
                a whole serialized message.
            kind: ``"points"`` or ``"message"``.
            project: The run's project, for ``"runs"`` subscribers of one project.
        """
        if not self.enabled:
            return
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(_EMIT, (str(topic), project, kind, body, time.time(),
                                   self.worker_id, str(topic)))

    async def publish(self, topic: Topic, message: dict[str, Any],
                      project: str | None = None) -> None:
        """Push ``message`` to this process's websockets of ``topic``, and to the other
        processes' (in a transaction of its own)."""
        self.hub.publish(topic, message, project=project)
        if self.enabled:
            text = json.dumps(message, separators=(",", ":"), allow_nan=False)
            await run_in_threadpool(self._emit_alone, topic, text, project)

    def _emit_alone(self, topic: Topic, text: str, project: str | None) -> None:
        # The write it announces is committed: a failure here must not fail the request.
        try:
            with self.db.engine.begin() as connection:
                self.emit(connection, topic, text, kind="message", project=project)
        except Exception as exc:
            logger.warning("live fan-out: could not send a %s message to the other processes: "
                           "%s", topic, str(exc).strip().splitlines()[0] if str(exc) else exc)

    async def start(self, wait_s: float = 5.0) -> None:
        """Start listening; wait up to ``wait_s`` seconds for the first connection."""
        if not self.enabled:
            return
        self._task = asyncio.get_running_loop().create_task(self._listen())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.listening.wait(), wait_s)
        if not self.listening.is_set():
            logger.warning("live fan-out: not listening yet; retrying in the background")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _conninfo(self) -> str:
        url = self.db.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def _connect(self, name: str) -> Any:
        import psycopg  # the [postgres] extra; enabled only on PostgreSQL

        return await psycopg.AsyncConnection.connect(
            self._conninfo(), autocommit=True, application_name=name,
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)

    async def _listen(self) -> None:
        delay = 0.1
        lost = False
        while True:
            try:
                async with await self._connect(APPLICATION_NAME) as listener, \
                        await self._connect("emaboard-fanout") as reader:
                    await listener.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if lost:  # what was sent meanwhile is gone: every page re-reads
                        self.reconnects += 1
                        logger.warning("live fan-out: listening again; websockets resync")
                        self.hub.resync_all()
                    lost, delay = False, 0.1
                    await self._pump(listener, reader)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # psycopg.OperationalError, OSError, ...
                self.listening.clear()
                lost = True
                logger.warning("live fan-out: lost the LISTEN connection (%s); reconnecting "
                               "in %.1f s", str(exc).strip().splitlines()[0] if str(exc)
                               else type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY_S)

    async def _pump(self, listener: Any, reader: Any) -> None:
        """Deliver notifications; on silence, check the connection and delete old events."""
        while True:
            async for note in listener.notifies(timeout=PING_S):
                origin, event_id, topic = note.payload.split(" ", 2)
                if origin != self.worker_id and self.hub.has_subscribers(topic_key(topic)):
                    await self._deliver(reader, int(event_id), topic_key(topic))
            await asyncio.wait_for(listener.execute("SELECT 1"), PING_S)
            await reader.execute(_CLEANUP, (time.time() - RETENTION_S,))

    async def _deliver(self, reader: Any, event_id: int, topic: Topic) -> None:
        row = await (await reader.execute(_READ, (event_id,))).fetchone()
        if row is None:  # deleted before this process read it
            self.hub.resync(topic)
            return
        _, project, kind, body = row
        if kind == "points":
            self.hub.publish_points_body(topic, body)
        else:
            self.hub.publish_text(topic, body, project=project)

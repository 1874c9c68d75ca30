"""In-process websocket fan-out.

Ingest calls :meth:`Hub.publish_*`, which only does ``put_nowait`` on each subscriber's
bounded queue and never awaits a client. Each subscriber has a sender task that drains its
queue, merges queued point batches into one ``points`` message and sends at most one message
per ``send_interval_s`` (:data:`SEND_INTERVAL_S`, setting ``ws_send_interval_ms``): a
message that finds the socket idle goes at once; what arrives meanwhile, or while a send
to a slow client is still under way, is merged into the next message. When a queue
overflows (more than ``queue_size`` messages or :data:`MAX_QUEUED_CHARS` characters: a slow
or stuck browser), its contents are dropped and a single ``{"type": "resync"}`` takes their
place: the client re-reads over REST. Point batches are serialized once per ingest, not once
per client.

The hub serves the websockets of one process; :mod:`emaboard_server.app.fanout` brings it
what the other processes on the same PostgreSQL database stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core

from ema_core.wire import points_json
from emaboard_server.app.ingest import Row

logger = logging.getLogger(__name__)

# 25 ms: at most 40 messages/s per websocket, under the dashboard's 50 ms redraw batching;
# 100 ms cost up to 100 ms of ingest-to-browser latency (p99 196 ms at full load).
SEND_INTERVAL_S = 0.025
MAX_QUEUED_CHARS = 64 * (1 << 20)  # per subscriber: a stuck browser holds at most ~64 MB
RESYNC = json.dumps({"type": "resync"})


def points_body(points: Sequence[Row], posted: Sequence[Any] | None = None) -> str:
    """Points as the inside of a JSON array, the form a ``points`` message carries them in.

    Args:
        points: Stored rows.
        posted: The posted points in wire form when they are exactly ``points`` (written as
            posted, by pydantic-core's serializer).
    """
    if posted is None:
        return points_json(points)
    # pydantic-core's serializer (Rust) is ~5x faster than json.dumps here, and writes a bare
    # NaN/±Inf that a client posted as the API's strings.
    return pydantic_core.to_json(posted, inf_nan_mode="strings")[1:-1].decode()


@dataclass(frozen=True)
class _Points:
    """A batch of points, pre-serialized as the inside of a JSON array."""

    body: str


Item = _Points | str  # a point batch, or a whole message already serialized
Topic = int | str  # a run id, or "runs"
Send = Callable[[str], Awaitable[None]]


@dataclass(eq=False)
class Subscriber:
    """One websocket's queue and sender; ``topic`` is a run id or ``"runs"``."""

    topic: int | str
    send: Send
    queue: asyncio.Queue[Item]
    project: str | None = None
    send_interval_s: float = SEND_INTERVAL_S
    max_queued_chars: int = MAX_QUEUED_CHARS
    resyncs: int = 0
    queued_chars: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def offer(self, item: Item) -> None:
        """Queue ``item`` without waiting; on overflow (too many messages, or too many
        characters queued) replace the backlog by a resync."""
        size = len(item.body) if isinstance(item, _Points) else len(item)
        if self.queued_chars + size <= self.max_queued_chars:
            try:
                self.queue.put_nowait(item)
                self.queued_chars += size
                return
            except asyncio.QueueFull:
                pass
        self.resync()

    def resync(self) -> None:
        """Replace whatever is queued by one resync message."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(RESYNC)
        self.queued_chars = len(RESYNC)
        self.resyncs += 1

    def _drain(self, first: Item) -> list[str]:
        """``first`` plus everything queued now, point batches merged into one message."""
        messages: list[str] = []
        batches: list[str] = []
        item: Item | None = first
        while item is not None:
            if isinstance(item, _Points):
                batches.append(item.body)
            elif item == RESYNC:
                messages, batches = [RESYNC], []  # what came before is superseded
            else:
                messages.append(item)
            item = None if self.queue.empty() else self.queue.get_nowait()
        self.queued_chars = 0  # the queue is empty now: nothing else runs during a drain
        if batches:
            messages.append('{"type":"points","points":[' + ",".join(batches) + "]}")
        return messages

    async def run(self) -> None:
        """Send queued messages until cancelled or the socket fails."""
        loop = asyncio.get_running_loop()
        last_send = -self.send_interval_s
        while True:
            item = await self.queue.get()
            wait_s = last_send + self.send_interval_s - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            for message in self._drain(item):
                await self.send(message)
            last_send = loop.time()


class Hub:
    """Subscribers per topic: a run id (``/ws/runs/{id}``) or ``"runs"`` (``/ws/runs``)."""

    def __init__(self, queue_size: int = 256, send_interval_s: float = SEND_INTERVAL_S) -> None:
        self.queue_size = queue_size
        self.send_interval_s = send_interval_s
        self._topics: dict[int | str, set[Subscriber]] = {}

    def subscribe(self, topic: int | str, send: Send, *, project: str | None = None) -> Subscriber:
        """Register a subscriber; it queues from now on, and sends once :meth:`start` ran."""
        sub = Subscriber(topic, send, asyncio.Queue(self.queue_size), project=project,
                         send_interval_s=self.send_interval_s)
        self._topics.setdefault(topic, set()).add(sub)
        return sub

    def start(self, sub: Subscriber) -> asyncio.Task[None]:
        """Start the subscriber's sender task (call inside the event loop); return it."""
        sub.task = asyncio.get_running_loop().create_task(sub.run())
        return sub.task

    async def unsubscribe(self, sub: Subscriber) -> None:
        """Stop the subscriber's sender and forget it."""
        self._topics.get(sub.topic, set()).discard(sub)
        if sub.task is not None:
            sub.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sub.task

    def has_subscribers(self, topic: Topic) -> bool:
        """Whether ``topic`` has subscribers (safe to call from a worker thread)."""
        return bool(self._topics.get(topic))

    def subscribers(self, topic: int | str) -> set[Subscriber]:
        """The current subscribers of ``topic`` (a copy)."""
        return set(self._topics.get(topic, ()))

    def publish_points(
        self, run_id: int, points: Sequence[Row], posted: Sequence[Any] | None = None
    ) -> None:
        """Queue new points of ``run_id`` for its subscribers (serialized once, here).

        Args:
            run_id: The run the points belong to.
            points: The points that were stored.
            posted: The posted points in wire form, when they are exactly ``points`` (every
                one stored, each with its ``wall_time``): then they are written as posted,
                by pydantic-core's serializer.
        """
        if self._topics.get(run_id) and points:
            self.publish_points_body(run_id, points_body(points, posted))

    def publish_points_body(self, topic: Topic, body: str) -> None:
        """Queue points already serialized by :func:`points_body` for ``topic``'s subscribers."""
        item = _Points(body)
        for sub in list(self._topics.get(topic, ())):
            sub.offer(item)

    def publish(
        self, topic: Topic, message: dict[str, Any], project: str | None = None
    ) -> None:
        """Queue one message for ``topic``; on ``"runs"`` only for subscribers of ``project``."""
        if self._topics.get(topic):
            text = json.dumps(message, separators=(",", ":"), allow_nan=False)
            self.publish_text(topic, text, project=project)

    def publish_text(self, topic: Topic, text: str, project: str | None = None) -> None:
        """Queue one serialized message, as :meth:`publish` does."""
        for sub in list(self._topics.get(topic, ())):
            if sub.project is None or project is None or sub.project == project:
                sub.offer(text)

    def resync(self, topic: Topic) -> None:
        """Tell ``topic``'s subscribers to re-read (their queues are replaced by a resync)."""
        for sub in list(self._topics.get(topic, ())):
            sub.resync()

    def resync_all(self) -> None:
        """:meth:`resync` every topic."""
        for topic in list(self._topics):
            self.resync(topic)

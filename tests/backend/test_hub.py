"""The websocket hub on its own: coalescing, bounded queues, resync, slow clients.

No fixed sleeps: each test waits for the condition it needs (:func:`until`), so it is as
fast as the hub and does not fail on a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable

import pytest

from emaboard_server.app.hub import RESYNC, SEND_INTERVAL_S, Hub
from emaboard_server.app.read_points import Point


def batch(step: int, n: int = 3) -> list[Point]:
    return [Point("k", step + i, float(i), 1.0) for i in range(n)]


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Let the event loop run until ``condition()`` holds; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.001)


def steps_of(messages: list[str]) -> list[int]:
    return [p["step"] for text in messages for p in json.loads(text).get("points", [])]


def test_batches_queued_while_waiting_are_merged_into_one_message() -> None:
    async def scenario() -> list[dict]:
        sent: list[str] = []

        async def send(text: str) -> None:
            sent.append(text)

        hub = Hub(queue_size=100)
        sub = hub.subscribe(1, send)
        for step in range(0, 30, 3):  # queued before the sender starts
            hub.publish_points(1, batch(step))
        hub.start(sub)
        await until(lambda: bool(sent))
        assert sub.queue.empty()  # the one drain took everything
        await hub.unsubscribe(sub)
        return [json.loads(text) for text in sent]

    messages = asyncio.run(scenario())
    assert len(messages) == 1
    assert messages[0]["type"] == "points"
    assert [p["step"] for p in messages[0]["points"]] == list(range(30))


@pytest.mark.parametrize("interval_s", [SEND_INTERVAL_S, 0.1])  # default, ws_send_interval_ms
def test_sends_are_spaced_by_the_minimum_interval(interval_s: float) -> None:
    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        times: list[float] = []
        sent: list[str] = []

        async def send(text: str) -> None:
            times.append(loop.time())
            sent.append(text)

        hub = Hub(send_interval_s=interval_s)
        sub = hub.subscribe(1, send)
        hub.start(sub)
        for step in range(12):  # the input: a batch every 10 ms, faster than sends may go
            hub.publish_points(1, batch(step * 3))
            await asyncio.sleep(0.01)
        await until(lambda: len(steps_of(sent)) == 36)
        await hub.unsubscribe(sub)
        assert steps_of(sent) == list(range(36))
        return times

    times = asyncio.run(scenario())
    assert len(times) >= 2
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= interval_s * 0.95  # a spacing rule, not a speed target


def test_overflow_drops_the_backlog_for_one_resync_and_spares_others() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str], int]:
        stuck = asyncio.Event()
        slow_sent: list[str] = []
        fast_sent: list[str] = []

        async def slow(text: str) -> None:
            slow_sent.append(text)
            await stuck.wait()  # a browser that stopped reading

        async def fast(text: str) -> None:
            fast_sent.append(text)

        hub = Hub(queue_size=15)  # > batches per send interval of a healthy client
        slow_sub = hub.subscribe(1, slow)
        fast_sub = hub.subscribe(1, fast)
        hub.start(slow_sub)
        hub.start(fast_sub)
        hub.publish_points(1, batch(0))
        await until(lambda: len(slow_sent) == 1)  # the slow sender is stuck in send() now
        for step in range(1, 20):
            hub.publish_points(1, batch(step * 3))  # never waits on the stuck client
            await asyncio.sleep(0.01)  # the input: 10 batches per send interval
        assert slow_sub.queue.qsize() <= 15
        queued = [slow_sub.queue.get_nowait() for _ in range(slow_sub.queue.qsize())]
        stuck.set()
        await until(lambda: len(steps_of(fast_sent)) == 60)
        resyncs = slow_sub.resyncs
        await hub.unsubscribe(slow_sub)
        await hub.unsubscribe(fast_sub)
        return [q if isinstance(q, str) else "points" for q in queued], fast_sent, slow_sent, \
            resyncs

    queued, fast_sent, slow_sent, resyncs = asyncio.run(scenario())
    assert resyncs >= 1
    assert queued[0] == RESYNC
    assert steps_of(slow_sent) == [0, 1, 2]  # only what it got before it stopped reading
    assert steps_of(fast_sent) == list(range(60))  # every point, once, in order


def test_resync_supersedes_queued_points_in_one_drain() -> None:
    async def scenario() -> list[str]:
        sent: list[str] = []

        async def send(text: str) -> None:
            sent.append(text)

        hub = Hub(queue_size=2)
        sub = hub.subscribe(1, send)
        for step in range(5):
            hub.publish_points(1, batch(step * 3))
        hub.publish(1, {"type": "run", "run": {"id": 1}})
        hub.start(sub)
        await until(lambda: len(sent) == 2)
        assert sub.queue.empty()
        await hub.unsubscribe(sub)
        return sent

    sent = asyncio.run(scenario())
    assert sent[0] == RESYNC
    assert [json.loads(t)["type"] for t in sent] == ["resync", "run"]


def test_runs_topic_filters_by_project() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        mine: list[str] = []
        everyone: list[str] = []

        async def to_mine(text: str) -> None:
            mine.append(text)

        async def to_all(text: str) -> None:
            everyone.append(text)

        hub = Hub()
        a = hub.subscribe("runs", to_mine, project="a")
        b = hub.subscribe("runs", to_all)
        hub.start(a)
        hub.start(b)
        hub.publish("runs", {"type": "run", "run": {"id": 1}}, project="a")
        hub.publish("runs", {"type": "run", "run": {"id": 2}}, project="b")
        await until(lambda: len(everyone) == 2 and len(mine) == 1)
        assert a.queue.empty()
        await hub.unsubscribe(a)
        await hub.unsubscribe(b)
        return mine, everyone

    mine, everyone = asyncio.run(scenario())
    assert [json.loads(t)["run"]["id"] for t in mine] == [1]
    assert sorted(json.loads(t)["run"]["id"] for t in everyone) == [1, 2]


def test_publishing_reaches_only_the_topics_subscribers_and_costs_nothing_without() -> None:
    async def scenario() -> None:
        async def send(text: str) -> None:
            raise AssertionError("the sender task is never started here")

        hub = Hub()
        other = hub.subscribe(8, send)
        # Nothing is serialized for a topic without subscribers: this value cannot be.
        unserializable = [Point(object(), 1, 1.0, 1.0)]  # type: ignore[arg-type]
        hub.publish_points(7, unserializable)
        hub.publish(7, {"type": "run", "value": math.nan})
        hub.publish_points(8, [])  # an empty batch is no message either
        assert other.queue.empty()
        with pytest.raises(TypeError, match="not JSON serializable"):
            hub.publish_points(8, unserializable)
        hub.publish_points(8, batch(0))
        assert other.queue.qsize() == 1
        await hub.unsubscribe(other)

    asyncio.run(scenario())


def test_publish_refuses_bare_nan_in_messages() -> None:
    async def scenario() -> None:
        async def send(text: str) -> None:
            pass

        hub = Hub()
        sub = hub.subscribe(1, send)
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            hub.publish(1, {"type": "run", "value": math.nan})
        await hub.unsubscribe(sub)

    asyncio.run(scenario())


def test_posted_wire_points_are_forwarded_as_posted_or_rewritten_when_not_json() -> None:
    async def scenario(posted: list) -> list[dict]:
        sent: list[str] = []

        async def send(text: str) -> None:
            sent.append(text)

        hub = Hub()
        sub = hub.subscribe(1, send)
        hub.publish_points(1, [Point("k", 1, math.nan, 2.0)], posted)
        hub.start(sub)
        await until(lambda: bool(sent))
        await hub.unsubscribe(sub)
        return json.loads(sent[0])["points"]

    wire = [{"key": "k", "step": 1, "value": "NaN", "wall_time": 2.0}]
    assert asyncio.run(scenario(wire)) == wire
    bare_nan = [{"key": "k", "step": 1, "value": math.nan, "wall_time": 2.0}]
    assert asyncio.run(scenario(bare_nan)) == wire


def test_queued_characters_are_bounded_too() -> None:
    async def scenario() -> tuple[int, list[str]]:
        sent: list[str] = []

        async def send(text: str) -> None:
            sent.append(text)

        hub = Hub(queue_size=1000)
        sub = hub.subscribe(1, send)
        sub.max_queued_chars = 2000
        for step in range(0, 300, 30):  # ten batches of ~2,000 characters each
            hub.publish_points(1, batch(step, 30))
        resyncs = sub.resyncs
        hub.start(sub)
        await until(lambda: bool(sent))
        await hub.unsubscribe(sub)
        return resyncs, sent

    resyncs, sent = asyncio.run(scenario())
    assert resyncs >= 1
    assert json.loads(sent[0]) == {"type": "resync"}

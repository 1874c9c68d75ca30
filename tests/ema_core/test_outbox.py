"""The sender's Outbox on its own, without threads: the buffer, the batch in flight and the
spool keep every point, in order, within the memory bound (Hypothesis drives random orders
of the collector's and the poster's calls)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ema_core._outbox import Outbox
from ema_core.spool import Spool, SpooledPoint


def points(first: int, n: int) -> list[SpooledPoint]:
    return [(seq, "k", seq, float(seq), 0.0) for seq in range(first, first + n)]


def seqs(batch: list[SpooledPoint]) -> list[int]:
    return [p[0] for p in batch]


def test_memory_takes_points_up_to_its_bound_and_the_spool_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    outbox = Outbox(spool, max_points=3)
    outbox.put(points(0, 5))
    assert seqs(outbox.in_memory()) == [0, 1, 2]
    assert seqs(spool.head_points(10)) == [3, 4] and outbox.spooled == 2
    outbox.put(points(5, 1))  # memory has room again only after the spool drained
    batch, from_spool = outbox.take(10)
    assert (seqs(batch), from_spool) == ([0, 1, 2], False)
    outbox.put(points(6, 1))
    assert seqs(spool.head_points(10)) == [3, 4, 5, 6]
    outbox.sent(batch, from_spool)
    batch, from_spool = outbox.take(2)
    assert (seqs(batch), from_spool) == ([3, 4], True)
    outbox.sent(batch, from_spool)
    outbox.sent(*outbox.take(10))
    assert outbox.spooled == 0 and spool.count_points() == 0
    outbox.put(points(7, 1))
    assert seqs(outbox.in_memory()) == [7]
    assert (outbox.points_spooled, outbox.max_held) == (4, 3)
    spool.close()


def test_a_retried_batch_goes_back_in_front(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    outbox = Outbox(spool, max_points=10)
    outbox.put(points(0, 4))
    batch, from_spool = outbox.take(2)
    outbox.put(points(4, 1))
    outbox.retry(batch, from_spool)
    assert seqs(outbox.take(10)[0]) == [0, 1, 2, 3, 4]
    spool.close()


def test_a_failed_server_spills_memory_in_order_until_it_answers(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    outbox = Outbox(spool, max_points=10)
    outbox.put(points(0, 4))
    outbox.take(2)  # [0, 1] in flight when the request fails
    outbox.server_failed()
    outbox.put(points(4, 1))
    assert outbox.in_memory() == [] and seqs(spool.head_points(10)) == [0, 1, 2, 3, 4]
    outbox.server_answered()
    outbox.sent(*outbox.take(10))
    outbox.put(points(5, 1))
    assert seqs(outbox.in_memory()) == [5] and outbox.spooled == 0
    spool.close()


def test_after_abandon_everything_stays_in_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    outbox = Outbox(spool, max_points=10)
    outbox.put(points(0, 3))
    batch, from_spool = outbox.take(2)
    outbox.abandon()
    outbox.sent(batch, from_spool)  # a request that was still running when the sender closed
    outbox.retry(batch, from_spool)
    outbox.put(points(3, 1))
    assert outbox.in_memory() == [] and seqs(spool.head_points(10)) == [0, 1, 2, 3]
    assert outbox.spooled == 4
    spool.close()


class OutboxMachine(RuleBasedStateMachine):
    """The collector (put) and the poster (take, then sent, retry or a server failure) in
    any order; the invariants are checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.spool = Spool(Path(self.dir) / "spool.sqlite")
        self.next_seq = 0
        self.delivered: list[int] = []
        self.in_flight: tuple[list[SpooledPoint], bool] | None = None
        self.abandoned = False

    @initialize(max_points=st.integers(1, 6))
    def start(self, max_points: int) -> None:
        self.outbox = Outbox(self.spool, max_points)

    @rule(n=st.integers(0, 5))
    def put(self, n: int) -> None:
        self.outbox.put(points(self.next_seq, n))
        self.next_seq += n

    @precondition(lambda self: self.in_flight is None)
    @rule(n=st.integers(1, 4))
    def take(self, n: int) -> None:
        batch, from_spool = self.outbox.take(n)
        # always the oldest points still to deliver, in order
        assert seqs(batch) == sorted(self.outstanding())[:len(batch)]
        if batch:
            self.in_flight = (batch, from_spool)

    @precondition(lambda self: self.in_flight is not None)
    @rule()
    def sent(self) -> None:
        assert self.in_flight is not None
        self.outbox.sent(*self.in_flight)
        if not self.abandoned:
            self.delivered += seqs(self.in_flight[0])
        self.in_flight = None

    @precondition(lambda self: self.in_flight is not None)
    @rule()
    def retry(self) -> None:
        assert self.in_flight is not None
        self.outbox.retry(*self.in_flight)
        self.in_flight = None

    @rule()
    def server_failed(self) -> None:
        self.outbox.server_failed()
        self.in_flight = None

    @rule()
    def server_answered(self) -> None:
        self.outbox.server_answered()

    @precondition(lambda self: not self.abandoned)
    @rule()
    def abandon(self) -> None:
        self.outbox.abandon()
        self.abandoned = True

    def outstanding(self) -> list[int]:
        return seqs(self.outbox.in_memory()) + seqs(self.spool.head_points(10**6))

    @invariant()
    def nothing_lost_or_doubled_and_in_order(self) -> None:
        if not hasattr(self, "outbox"):
            return
        memory = seqs(self.outbox.in_memory())
        spooled = seqs(self.spool.head_points(10**6))
        assert sorted(self.delivered + memory + spooled) == list(range(self.next_seq))
        assert self.delivered == sorted(set(self.delivered))  # each once, in seq order
        assert not memory or not spooled or max(memory) < min(spooled)
        assert memory == sorted(memory)
        assert len(memory) <= self.outbox.max_points
        assert self.outbox.spooled == len(spooled)
        if self.abandoned:
            assert memory == []

    def teardown(self) -> None:
        self.spool.close()
        shutil.rmtree(self.dir)


OutboxMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=30,
                                           deadline=None)
test_outbox_keeps_every_point_in_order = OutboxMachine.TestCase

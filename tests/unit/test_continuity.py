"""The continuity guard: a partition whose messages the consumer skipped is read again from the
gap, and nothing after the gap is handled before it (seen in a failover run: Faust skipped the
messages fetched between its seek and the end of its rebalance)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.continuity import Continuity
from streams.settings import Settings
from streams.topics import GroupOffsets

TOPIC = "detect"


class _Consumer:
    """Faust's consumer as the guard sees it: seeks run on its thread (``_thread``)."""

    def __init__(self) -> None:
        self.sought: list[tuple[int, int]] = []
        self._read_offset: dict[TP, int | None] = {}
        self._thread = _ConsumerThread(self)

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: 0 for tp in tps}


class _ConsumerThread:
    """Runs what it is given at once, or once ``gate`` opens (a busy consumer thread)."""

    def __init__(self, consumer: _Consumer) -> None:
        self.consumer = consumer
        self.gate: asyncio.Event | None = None

    def _ensure_consumer(self) -> Any:
        return SimpleNamespace(seek=self._seek)

    def _seek(self, tp: TP, offset: int) -> None:
        self.consumer.sought.append((tp.partition, offset))

    async def call_thread(self, fun: Any, *args: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        return await fun(*args)


class _Offsets(GroupOffsets):
    """The broker's committed offsets, given; the rest of GroupOffsets is the real one."""

    def __init__(self, committed: dict[int, int]) -> None:
        super().__init__(Settings(), "group")
        self.given = committed

    async def committed(self, topic: str, partitions: list[int]) -> dict[int, int]:
        return {p: o for p, o in self.given.items() if p in partitions}


def _messages(partition: int, offsets: range) -> list[Any]:
    return [SimpleNamespace(partition=partition, offset=o) for o in offsets]


def _positions(messages: list[Any]) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in messages]


def test_a_gap_after_the_resume_point_is_read_again_and_nothing_after_it_is_handled() -> None:
    consumer = _Consumer()
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=3)
    guard = Continuity(app, TOPIC, _Offsets({0: 27}))

    async def scenario() -> list[list[tuple[int, int]]]:
        guard.on_assigned({TP(TOPIC, 0), TP(TOPIC, 1), TP("other", 0)})
        first = await guard.admit(_messages(0, range(44, 50)) + _messages(1, range(0, 3)))
        await guard.settled()
        again = await guard.admit(_messages(0, range(27, 50)))  # after the seek
        later = await guard.admit(_messages(0, range(50, 52)))
        return [_positions(first), _positions(again), _positions(later)]

    first, again, later = asyncio.run(scenario())
    assert consumer.sought == [(0, 27)]
    assert first == [(1, 0), (1, 1), (1, 2)]  # partition 1 (never committed) from its start
    assert again == [(0, o) for o in range(27, 50)]
    assert later == [(0, 50), (0, 51)]


def test_messages_read_again_below_the_expected_offset_are_handled() -> None:
    """A replay from an older committed offset repeats messages: handled again (idempotent)."""
    app = SimpleNamespace(consumer=_Consumer(), consumer_generation_id=1)
    guard = Continuity(app, TOPIC, _Offsets({0: 5}))

    async def scenario() -> list[tuple[int, int]]:
        guard.on_assigned({TP(TOPIC, 0)})
        await guard.admit(_messages(0, range(5, 10)))
        return _positions(await guard.admit(_messages(0, range(7, 12))))

    assert asyncio.run(scenario()) == [(0, o) for o in range(7, 12)]


def test_a_guard_that_fails_lets_the_batch_through() -> None:
    class Broken(_Offsets):
        async def committed(self, topic: str, partitions: list[int]) -> dict[int, int]:
            raise ConnectionError("broker unreachable")

    app = SimpleNamespace(consumer=_Consumer(), consumer_generation_id=1)
    guard = Continuity(app, TOPIC, Broken({}))

    async def scenario() -> list[tuple[int, int]]:
        guard.on_assigned({TP(TOPIC, 0)})
        return _positions(await guard.admit(_messages(0, range(40, 42))))

    assert asyncio.run(scenario()) == [(0, 40), (0, 41)]


def test_a_partition_whose_last_messages_never_came_is_read_again_once_quiet() -> None:
    """Nothing after them shows a gap: the high-water mark and silence tell instead."""
    clock = {"now": 0.0}

    class Consumer(_Consumer):
        def __init__(self) -> None:
            super().__init__()
            self.unacked: list[Any] = []

        def assignment(self) -> set[TP]:
            return {TP(TOPIC, 0)}

        def highwater(self, tp: TP) -> int:
            return 30

    consumer = Consumer()
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=1)
    guard = Continuity(
        app,
        TOPIC,
        _Offsets({0: 20}),
        stall_seconds=5,
        monotonic=lambda: clock["now"],
    )

    async def scenario() -> None:
        guard.on_assigned({TP(TOPIC, 0)})
        await guard.admit(_messages(0, range(20, 25)))  # 25..29 never arrive
        clock["now"] = 1
        await guard.patrol()  # short of its end since now
        clock["now"] = 4
        await guard.patrol()
        assert consumer.sought == []  # not for long enough: they may be on their way
        clock["now"] = 6
        await guard.patrol()
        await guard.settled()
        assert consumer.sought == [(0, 25)]
        consumer.unacked = [SimpleNamespace(tp=TP(TOPIC, 0))]
        clock["now"] = 20
        await guard.patrol()  # some of them wait in Faust's buffers: nothing to do
        await guard.settled()
        assert consumer.sought == [(0, 25)]

    asyncio.run(scenario())


def test_a_rewind_overtaken_by_a_rebalance_is_dropped() -> None:
    """Faust seeks every partition again after a rebalance; an older seek would only mislead."""
    consumer = _Consumer()
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=1)
    guard = Continuity(app, TOPIC, _Offsets({0: 10}))

    async def scenario() -> None:
        guard.on_assigned({TP(TOPIC, 0)})
        await guard.admit(_messages(0, range(20, 22)))  # a gap: a seek is scheduled...
        app.consumer_generation_id = 2  # ...but a rebalance comes first
        await guard.settled()

    asyncio.run(scenario())
    assert consumer.sought == []


def test_one_seek_per_partition_at_a_time() -> None:
    """Each batch after a gap used to ask for another seek; they queued on the consumer thread
    (hundreds in a failover run) and held it while a rebalance waited for them."""
    consumer = _Consumer()
    consumer._thread.gate = asyncio.Event()  # the consumer thread is busy for a while
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=1, rebalancing=False)
    guard = Continuity(app, TOPIC, _Offsets({0: 10}))

    async def scenario() -> None:
        guard.on_assigned({TP(TOPIC, 0)})
        for start in (20, 22, 24):  # three batches past the gap before the seek is done
            assert await guard.admit(_messages(0, range(start, start + 2))) == []
        assert consumer._thread.gate is not None
        consumer._thread.gate.set()
        await guard.settled()
        # Done: a gap seen again later is sought again.
        await guard.admit(_messages(0, range(30, 31)))
        await guard.settled()

    asyncio.run(scenario())
    assert consumer.sought == [(0, 10), (0, 10)]


def test_the_seek_does_not_wait_for_the_position_and_lets_faust_read_the_gap_again() -> None:
    """Faust's ``seek_wait`` waits for aiokafka's position, which during a rebalance waits for
    the next assignment; the seek alone is enough. Faust drops fetched messages below its read
    offset: the seek moves it back too."""
    consumer = _Consumer()
    consumer._read_offset[TP(TOPIC, 0)] = 21
    app = SimpleNamespace(consumer=consumer, consumer_generation_id=1, rebalancing=False)
    guard = Continuity(app, TOPIC, _Offsets({0: 10}))

    async def scenario() -> None:
        guard.on_assigned({TP(TOPIC, 0)})
        await guard.admit(_messages(0, range(20, 22)))
        await guard.settled()

    asyncio.run(scenario())
    assert consumer.sought == [(0, 10)]
    assert consumer._read_offset[TP(TOPIC, 0)] == 10

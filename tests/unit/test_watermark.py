"""The detectors' clock never runs ahead of events still to come, and never stops in silence."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from faust.types import TP

from streams.detection.backlog import Backlog
from streams.detection.watermark import DetectClock, SourceProgress
from streams.settings import Settings
from streams.topics import GroupOffsets

T = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
WALL = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Clocks:
    def __init__(self) -> None:
        self.seconds = 0.0

    def progress(self, idle: float = 5.0) -> SourceProgress:
        return SourceProgress(idle, wall=lambda: WALL, monotonic=lambda: self.seconds)


def test_each_partition_reports_the_newest_event_time_delivered() -> None:
    progress = Clocks().progress()
    progress.observe(0, 10, T + timedelta(hours=3))
    progress.observe(1, 4, T + timedelta(hours=1))
    progress.observe(1, 5, T)  # out of order: never moves a partition back
    assert progress.progress({0: True, 1: True}) == {
        0: T + timedelta(hours=3),
        1: T + timedelta(hours=1),
    }


def test_a_partition_not_yet_read_has_no_progress_until_it_is_idle() -> None:
    clocks = Clocks()
    progress = clocks.progress(idle=5)
    assert progress.progress({0: True, 1: False}) == {}
    clocks.seconds = 6
    assert progress.progress({0: True, 1: False}) == {1: WALL}  # caught up and quiet


def test_a_quiet_caught_up_partition_follows_the_wall_clock() -> None:
    clocks = Clocks()
    progress = clocks.progress(idle=5)
    progress.observe(0, 1, T)
    clocks.seconds = 4
    assert progress.progress({0: False}) == {0: T}  # not idle yet
    clocks.seconds = 5
    assert progress.progress({0: False}) == {0: WALL}
    progress.observe(0, 2, T + timedelta(minutes=1))  # it speaks again: event time again
    assert progress.progress({0: False}) == {0: T + timedelta(minutes=1)}


def test_a_partition_with_a_backlog_is_never_idle() -> None:
    clocks = Clocks()
    progress = clocks.progress(idle=5)
    progress.observe(0, 1, T)
    clocks.seconds = 60
    assert progress.progress({0: True}) == {0: T}


def test_invalid_messages_move_the_offset_not_the_time() -> None:
    progress = Clocks().progress()
    progress.observe(0, 3, T)
    progress.observe(0, 4, None)
    assert progress.latest[0] == T and progress.next_offset[0] == 5


def test_a_revoked_partition_is_forgotten() -> None:
    clocks = Clocks()
    progress = clocks.progress(idle=5)
    progress.observe(0, 3, T)
    progress.forget([0])
    clocks.seconds = 60
    assert progress.progress({}) == {}


def test_the_detect_clock_is_the_slowest_source_partition_of_the_whole_group() -> None:
    """Ticks from two workers, each reading half the source partitions: the clock waits for
    the lagging partition, whichever worker reads it."""
    clock = DetectClock(source_partitions=4)
    clock.tick(0, {0: T + timedelta(hours=2), 1: T + timedelta(hours=2)})  # worker A
    assert clock.now({0}) is None  # partitions 2 and 3 have not told their progress
    clock.tick(0, {2: T + timedelta(hours=2), 3: T})  # worker B, partition 3 lagging
    assert clock.now({0}) == T
    clock.tick(0, {3: T - timedelta(hours=1)})  # an older claim never moves it back
    assert clock.now({0}) == T
    clock.tick(0, {3: T + timedelta(hours=5)})
    assert clock.now({0}) == T + timedelta(hours=2)


def test_the_detect_clock_waits_for_every_detect_partition_it_holds() -> None:
    clock = DetectClock(source_partitions=1)
    clock.tick(0, {0: T + timedelta(hours=2)})
    clock.tick(1, {0: T})
    assert clock.now({0, 1}) == T
    assert clock.now({0}) == T + timedelta(hours=2)
    assert clock.now({0, 2}) is None
    assert clock.now(set()) is None


def test_a_tick_survives_the_wire() -> None:
    from streams.detection.routing import decode, tick_only

    tick = {0: T, 3: T + timedelta(seconds=1)}
    assert decode(tick_only(tick)).progress == tick


def test_a_restored_snapshot_forgets_what_was_observed_since() -> None:
    progress = Clocks().progress()
    progress.observe(0, 3, T)
    before = progress.snapshot()
    progress.observe(0, 9, T + timedelta(hours=1))
    progress.restore(before)
    assert progress.latest == {0: T} and progress.next_offset == {0: 4}


class _Consumer:
    """What ``Backlog`` asks of Faust's consumer: the assignment, cached high-water marks and
    first offsets. Its fetch position is deliberately not part of it."""

    def __init__(self, highwater: int, earliest: int = 0) -> None:
        self.tp = TP("events", 0)
        self._highwater = highwater
        self._earliest = earliest

    def assignment(self) -> set[TP]:
        return {self.tp}

    def highwater(self, _: TP) -> int:
        return self._highwater

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self._earliest for tp in tps}


class _Offsets(GroupOffsets):
    """The broker's committed offsets, given; the rest of GroupOffsets is the real one."""

    def __init__(self, committed: dict[int, int]) -> None:
        super().__init__(Settings(), "group")
        self.asked = 0
        self.given = committed

    async def committed(self, topic: str, partitions: list[int]) -> dict[int, int]:
        self.asked += 1
        return {p: o for p, o in self.given.items() if p in partitions}


def _behind(
    consumer: _Consumer, offsets: _Offsets, progress: SourceProgress | None = None
) -> dict[int, bool]:
    app = SimpleNamespace(consumer=consumer)
    backlog = Backlog(app, "events", offsets, ask_every=0)  # type: ignore[arg-type]
    measured = progress or Clocks().progress()

    async def twice() -> dict[int, bool]:
        await backlog.measure(measured)  # asks the group, in the background
        await backlog.settled()
        return await backlog.measure(measured)

    return asyncio.run(twice())


def test_a_partition_is_caught_up_only_when_its_handled_events_reach_the_high_water_mark() -> None:
    """Fetched is not handled: Faust fetches ahead and holds messages it has not even tracked
    yet (seen in a failover run: the clock jumped to the wall clock over unhandled ones)."""
    progress = Clocks().progress()
    progress.observe(0, 4, T)
    assert _behind(_Consumer(highwater=10), _Offsets({0: 3}), progress) == {0: True}
    progress.observe(0, 9, T)
    assert _behind(_Consumer(highwater=10), _Offsets({}), progress) == {0: False}


def test_a_partition_the_group_committed_to_its_end_is_caught_up() -> None:
    """Handled by another worker before this one got it back (its own count stops short)."""
    progress = Clocks().progress()
    progress.observe(0, 4, T)
    assert _behind(_Consumer(highwater=10), _Offsets({0: 10}), progress) == {0: False}


def test_a_partition_with_nothing_handled_resumes_from_the_groups_committed_offset() -> None:
    offsets = _Offsets({0: 10})
    progress = Clocks().progress()
    assert _behind(_Consumer(highwater=10), offsets, progress) == {0: False}  # nothing to read
    assert _behind(_Consumer(highwater=10), offsets, progress) == {0: False}
    assert offsets.asked == 1  # remembered once it is the high-water mark
    assert _behind(_Consumer(highwater=10), _Offsets({0: 4})) == {0: True}  # 6 to read
    assert _behind(_Consumer(highwater=10, earliest=0), _Offsets({})) == {0: True}
    assert _behind(_Consumer(highwater=10, earliest=10), _Offsets({})) == {0: False}  # empty


def test_a_rebalance_forgets_what_detect_partitions_told() -> None:
    """A partition given back is re-read from its committed offset: its old claims are ahead."""
    clock = DetectClock(source_partitions=1)
    clock.tick(0, {0: T + timedelta(hours=2)})
    clock.forget()
    assert clock.now({0}) is None
    clock.tick(0, {0: T})
    assert clock.now({0}) == T


def test_claims_from_before_the_latest_rebalance_are_ignored() -> None:
    """A worker paused past its session timeout wakes up claiming the wall clock for partitions
    it no longer holds: its claims carry the old generation."""
    clock = DetectClock(source_partitions=1)
    clock.tick(0, {0: T}, generation=3)
    clock.tick(0, {0: WALL}, generation=2)  # the paused worker
    assert clock.now({0}) == T
    clock.tick(0, {0: T + timedelta(hours=1)}, generation=4)  # a rebalance not yet seen here
    assert clock.now({0}) == T + timedelta(hours=1)
    clock.tick(0, {0: WALL}, generation=3)
    assert clock.now({0}) == T + timedelta(hours=1)
    clock.forget(generation=4)
    clock.tick(0, {0: WALL}, generation=3)
    assert clock.now({0}) is None


def test_the_generation_survives_the_wire() -> None:
    from streams.detection import routing

    assert routing.decode(routing.tick_only({0: T}, generation=7)).generation == 7


def test_a_claim_too_far_in_the_future_is_not_believed() -> None:
    """Believed, a year-9999 claim (never taken back) would have decided that source
    partition's pending cases at once until the next rebalance."""
    clock = DetectClock(source_partitions=2, max_ahead=timedelta(hours=1), wall=lambda: WALL)
    assert clock.tick(0, {0: T, 1: datetime(9999, 1, 1, tzinfo=UTC)}) == [1]
    assert clock.now({0}) is None  # partition 1 has still told nothing believable
    assert clock.tick(0, {1: WALL + timedelta(minutes=59)}) == []  # skew within the bound
    assert clock.now({0}) == T

"""The detectors' clock never runs ahead of events still to come."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.detection.watermark import DetectClock, SourceClock

T = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def test_the_slowest_partition_with_a_backlog_holds_the_clock() -> None:
    clock = SourceClock()
    clock.observe(0, 10, T + timedelta(hours=3))
    clock.observe(1, 4, T + timedelta(hours=1))
    assert clock.watermark({0: True, 1: True}) == T + timedelta(hours=1)


def test_a_caught_up_partition_holds_nothing() -> None:
    clock = SourceClock()
    clock.observe(0, 10, T + timedelta(hours=3))
    clock.observe(1, 4, T + timedelta(hours=1))
    assert clock.watermark({0: True, 1: False}) == T + timedelta(hours=3)
    assert clock.watermark({0: False, 1: False}) == T + timedelta(hours=3)


def test_a_partition_with_a_backlog_not_yet_read_stops_the_clock() -> None:
    clock = SourceClock()
    clock.observe(0, 10, T)
    assert clock.watermark({0: True, 1: True}) is None


def test_invalid_messages_move_the_offset_not_the_time() -> None:
    clock = SourceClock()
    clock.observe(0, 3, T)
    clock.observe(0, 4, None)
    assert clock.latest[0] == T and clock.next_offset[0] == 5


def test_detect_clock_is_the_oldest_tick_of_the_assigned_partitions() -> None:
    clock = DetectClock()
    clock.tick(0, T + timedelta(hours=2))
    assert clock.now({0, 1}) is None  # partition 1 has no tick yet
    clock.tick(1, T)
    clock.tick(1, T - timedelta(hours=1))  # an older tick never moves it back
    assert clock.now({0, 1}) == T
    assert clock.now({0}) == T + timedelta(hours=2)

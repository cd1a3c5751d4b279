"""The event-time clock of the detectors: how far the ingest agent has surely read.

Detectors decide pending cases when the clock passes their deadline, so the clock must never run
ahead of events still to come. Partitions are read at uneven speeds (a backlog, a replay), so
the newest event time seen is not safe: the clock is the *oldest* progress among the source
partitions that still have data to read. A partition that is caught up holds nothing back: its
next events are new ones.

The ingest agent sends this clock as a tick to every partition of the detect topic after each
batch; the detect agent takes, per partition, the latest tick, and runs the detectors at the
oldest of those, so a slow detect partition holds the decisions back too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime


class SourceClock:
    def __init__(self) -> None:
        self.latest: dict[int, datetime] = {}
        self.next_offset: dict[int, int] = {}

    def observe(self, partition: int, offset: int, at: datetime | None) -> None:
        """A message handled (and its routed copies delivered); ``at`` None if it was invalid."""
        current = self.latest.get(partition)
        if at is not None and (current is None or at > current):
            self.latest[partition] = at
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset + 1)

    def watermark(self, backlog: Mapping[int, bool]) -> datetime | None:
        """``backlog``: per assigned partition, whether it still has events to read.

        None while a partition with a backlog has not shown any event yet (its position in
        event time is unknown).
        """
        holding = []
        for partition, behind in backlog.items():
            if not behind:
                continue
            if partition not in self.latest:
                return None
            holding.append(self.latest[partition])
        if holding:
            return min(holding)
        return max(self.latest.values(), default=None)


class DetectClock:
    """Per detect partition, the latest tick; the clock is the oldest of them."""

    def __init__(self) -> None:
        self.ticks: dict[int, datetime] = {}

    def tick(self, partition: int, at: datetime) -> None:
        current = self.ticks.get(partition)
        if current is None or at > current:
            self.ticks[partition] = at

    def now(self, assigned: set[int]) -> datetime | None:
        if not assigned or any(p not in self.ticks for p in assigned):
            return None
        return min(self.ticks[p] for p in assigned)

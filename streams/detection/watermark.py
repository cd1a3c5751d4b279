"""The event-time clock of the detectors, in one place.

Detectors decide pending cases when the clock passes their deadline, so the clock must never run
ahead of events still to come, and must not stop when events do.

- Ingest side (``SourceProgress``): for each source partition a worker reads, how far in event
  time its events have been *delivered* to the detect topic (the newest event time seen), or,
  once the partition is caught up and has sent nothing for ``idle`` seconds, the wall clock:
  a quiet practice must not postpone a deadline until its next event (idle advancement).
- Detect side (``DetectClock``): every worker sends its partitions' progress as a tick to every
  detect partition, after the events it covers. A detect partition's clock is the *minimum over
  every source partition of the topic*, whoever reads it: not one worker's view, so a lagging or
  orphaned partition (its worker killed, not yet reassigned) holds decisions back instead of
  having them taken early. The detect agent runs the detectors at the oldest clock among the
  detect partitions it holds.

Out-of-orderness is bounded by the policy's ``lateness`` (added to every deadline): an event
may arrive that much behind the newest one of its partition and still count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

Snapshot = tuple[dict[int, datetime], dict[int, int], dict[int, float]]


def _wall() -> datetime:
    return datetime.now(UTC)


class SourceProgress:
    def __init__(
        self,
        idle_seconds: float,
        wall: Callable[[], datetime] = _wall,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.idle_seconds = idle_seconds
        self.wall = wall
        self.monotonic = monotonic
        self.latest: dict[int, datetime] = {}
        self.next_offset: dict[int, int] = {}
        self.heard: dict[int, float] = {}  # when the partition last sent something (monotonic)

    def observe(self, partition: int, offset: int, at: datetime | None) -> None:
        """A message handled (and its routed copies delivered); ``at`` None if it was invalid."""
        current = self.latest.get(partition)
        if at is not None and (current is None or at > current):
            self.latest[partition] = at
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset + 1)
        self.heard[partition] = self.monotonic()

    def snapshot(self) -> Snapshot:
        return dict(self.latest), dict(self.next_offset), dict(self.heard)

    def restore(self, snapshot: Snapshot) -> None:
        latest, next_offset, heard = snapshot
        self.latest, self.next_offset, self.heard = dict(latest), dict(next_offset), dict(heard)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions gone to another worker: their progress is that worker's to tell."""
        for partition in partitions:
            for known in (self.latest, self.next_offset, self.heard):
                known.pop(partition, None)

    def progress(self, backlog: Mapping[int, bool]) -> dict[int, datetime]:
        """Per assigned partition (``backlog``: does it still have events to read?), the event
        time up to which its events are delivered; absent while that is unknown."""
        now = self.monotonic()
        out: dict[int, datetime] = {}
        for partition, behind in backlog.items():
            latest = self.latest.get(partition)
            quiet_since = self.heard.setdefault(partition, now)
            if not behind and now - quiet_since >= self.idle_seconds:
                wall = self.wall()
                out[partition] = wall if latest is None else max(latest, wall)
            elif latest is not None:
                out[partition] = latest
        return out


class DetectClock:
    """Per detect partition, the progress of every source partition; see the module doc.

    Claims are fenced by the consumer group's generation, as Kafka fences offset commits: a
    worker paused long enough to lose its partitions (a GC pause, a stopped VM) wakes up still
    believing it holds them and, its sources quiet for that long, claims the wall clock for
    them while their new owner is still re-reading them. Its claims carry the old generation
    and are ignored once a newer one is known.
    """

    def __init__(
        self,
        source_partitions: int,
        max_ahead: timedelta = timedelta(hours=1),
        wall: Callable[[], datetime] = _wall,
    ):
        """``max_ahead``: how far past this worker's wall clock a claim may be (the ingest
        stage refuses events further in the future, so only a stranger or a bug claims more)."""
        self.source_partitions = source_partitions
        self.max_ahead = max_ahead
        self.wall = wall
        self.progress: dict[int, dict[int, datetime]] = {}
        self.generation = 0

    def tick(
        self, detect_partition: int, progress: Mapping[int, datetime], generation: int = 0
    ) -> list[int]:
        """Record the claims; return the source partitions whose claim was not believed.

        A claim too far ahead is dropped, not capped: believed (and never taken back), it would
        have decided that partition's pending cases early until the next rebalance."""
        if generation < self.generation:
            return []  # told before the latest rebalance
        if generation > self.generation:
            self.forget(generation)  # a rebalance this worker has not heard of yet
        known = self.progress.setdefault(detect_partition, {})
        horizon = self.wall() + self.max_ahead
        refused = []
        for source, at in progress.items():
            if at > horizon:
                refused.append(source)
            elif source not in known or at > known[source]:
                known[source] = at  # never backwards: a tick may repeat an older claim
        return refused

    def forget(self, generation: int = 0) -> None:
        """After a rebalance: every detect partition tells its progress again as it is read."""
        self.progress.clear()
        self.generation = max(self.generation, generation)

    def unclaimed(self, assigned: set[int]) -> list[int]:
        """Source partitions that some detect partition held here has no progress for: what
        holds the clock back (logged with each detect batch)."""
        told = [set(self.progress.get(d, {})) for d in assigned]
        return [s for s in range(self.source_partitions) if not all(s in t for t in told)]

    def now(self, assigned: set[int]) -> datetime | None:
        """The clock, or None while some source partition has not told its progress yet."""
        if not assigned:
            return None
        times = []
        for detect_partition in assigned:
            known = self.progress.get(detect_partition, {})
            if len(known) < self.source_partitions:
                return None
            times.append(min(known.values()))
        return min(times)

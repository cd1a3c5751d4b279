"""Is a source partition caught up? What lets the clock follow the wall clock in silence.

Used by the ingest stage's forwarder (``streams.ingest.Forwarder``) when it measures the
progress it sends to detection (``streams.detection.watermark.SourceProgress``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import faust

from streams import metrics
from streams.detection.watermark import SourceProgress
from streams.topics import GroupOffsets

log = logging.getLogger(__name__)


class Backlog:
    """Per assigned source partition: are there events not yet handled?

    A partition is caught up when the events handled reach its high-water mark: those this
    worker handled (observed by ``SourceProgress`` once their batch went through the ingest
    stage), or, failing that, those the group committed (asked of the broker, at most every
    ``ask_every`` seconds; a batch is committed only once handled, by whichever worker held
    the partition then). With no commit at all, a partition whose first offset is its
    high-water mark is empty. Never the fetch position: Faust fetches ahead and holds fetched
    messages, untracked even, in its buffers; a clock trusting the position claimed the wall
    clock over them (seen in a failover run).
    """

    def __init__(
        self,
        app: faust.App,
        topic: str,
        offsets: GroupOffsets,
        ask_every: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.app = app
        self.topic = topic
        self.offsets = offsets
        self.ask_every = ask_every
        self.monotonic = monotonic
        self._asked = float("-inf")
        self._asking: asyncio.Future[None] | None = None

    async def measure(self, progress: SourceProgress) -> dict[int, bool]:
        consumer = self.app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic == self.topic]
        highwater: dict[int, int | None] = {tp.partition: consumer.highwater(tp) for tp in assigned}
        handled = progress.next_offset
        short = [
            p for p, high in highwater.items() if high is not None and handled.get(p, -1) < high
        ]
        if short:
            self._ask_in_background(progress, short, highwater)
        behind = {}
        for partition, high in highwater.items():
            done = handled.get(partition)
            behind[partition] = high is None or done is None or done < high
            if high is not None and done is not None:
                metrics.CONSUMER_LAG.labels(str(partition)).set(max(0, high - done))
        return behind

    def _ask_in_background(
        self, progress: SourceProgress, short: list[int], highwater: dict[int, int | None]
    ) -> None:
        """Never awaited by the ingest stage: under load the broker's answer (an admin call in
        a thread, competing for the GIL) took seconds, and the ingest waited for it."""
        now = self.monotonic()
        if self._asking is not None or now - self._asked < self.ask_every:
            return
        self._asked = now
        self._asking = asyncio.ensure_future(self._ask_the_group(progress, short, highwater))
        self._asking.add_done_callback(self._asked_done)

    def _asked_done(self, task: asyncio.Future[None]) -> None:
        self._asking = None

    async def settled(self) -> None:
        """Until the question in flight (if any) is answered."""
        if self._asking is not None:
            await asyncio.shield(self._asking)

    async def _ask_the_group(
        self, progress: SourceProgress, short: list[int], highwater: dict[int, int | None]
    ) -> None:
        """Partitions short of their high-water mark by this worker's count: how far the group
        has committed them (recorded only when that is the high-water mark)."""
        try:
            reached = await self.offsets.resume_points(self.app.consumer, self.topic, short)
        except Exception as exc:  # asked again later; until then those partitions wait
            log.warning("committed offsets unavailable", extra={"error": str(exc)[:200]})
            return
        handled = progress.next_offset
        for partition, offset in reached.items():
            high = highwater.get(partition)
            if offset is not None and high is not None and offset >= high:
                handled[partition] = max(handled.get(partition, 0), offset)

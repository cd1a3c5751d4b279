"""Every message of a partition handled, in order: a guard against Faust skipping some.

Found in a failover run: right after a rebalance, Faust seeks each partition to its committed
offset and *then* resumes its flow control; messages fetched in between reach the stream while
the flow is still suspended, are skipped (never handled, never acknowledged), and the fetch
position has moved past them. Where the partition had no committed offset yet, Faust then
committed the later messages over the gap: a detect batch was never handled by anyone, and its
incidents were lost.

The guard knows, per partition, the next offset the agent must see: the group's committed offset
when the partition was assigned (asked of the broker before the new assignment handles anything;
the first offset if none), then each handled message's offset + 1. A batch that jumps past it
has a gap: the guard seeks the partition back to it, and sets the batch's later messages of that
partition aside (they come again, in order, after the seek). Counted in
``guetteur_consumer_gaps_total``, logged.

Skipped messages at the *end* of a partition show no gap, since nothing comes after them:
``patrol`` (every second) reads again a partition whose high-water mark has stayed past the
next expected offset for ``stall_seconds`` while nothing of it waits in Faust's buffers (a
source partition left short of its end also held the clock back forever).

What it cannot close: a partition with no committed offset at all, whose later messages Faust
acknowledges and commits before the seek takes effect, and a worker killed in that instant.

A seek must never hold the consumer thread: one seek per partition at a time, and the seek
alone, not Faust's ``seek_wait``, which then waits for aiokafka's position, i.e. for the next
assignment during a rebalance, on one of the consumer thread's two method-queue workers (a
stalled failover run had queued one such seek every 6 s per partition; Faust's commits and
fetches queue on the same workers).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.types import TP

from streams import metrics
from streams.topics import GroupOffsets

log = logging.getLogger(__name__)

Seek = Callable[[Any, TP, int], Awaitable[None]]


async def seek_on_consumer_thread(app: Any, tp: TP, offset: int) -> None:
    """Seek one partition without waiting for the position, and move Faust's read offset back
    with it (Faust drops fetched messages below its read offset, which the re-read ones are).

    On the consumer's own thread: a seek from the worker's thread mutated aiokafka's fetcher
    mid-read (KeyError, worker down)."""
    consumer = app.consumer
    thread = consumer._thread

    async def seek() -> None:
        thread._ensure_consumer().seek(tp, offset)
        if offset > 0:
            consumer._read_offset[tp] = offset
        else:
            consumer._read_offset.pop(tp, None)

    await thread.call_thread(seek)


class Continuity:
    def __init__(
        self,
        app: Any,
        topic: str,
        offsets: GroupOffsets,
        patience: float = 10.0,
        stall_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        seek: Seek = seek_on_consumer_thread,
    ):
        self.app = app
        self.topic = topic
        self.offsets = offsets
        self.patience = patience
        self.stall_seconds = stall_seconds
        self.monotonic = monotonic
        self.seek = seek
        self.expected: dict[int, int] = {}
        self.behind_since: dict[int, float] = {}  # first patrol that saw it short of its end
        self._reading: asyncio.Task[dict[int, int]] | None = None
        self._seeking: dict[int, asyncio.Future[None]] = {}  # partition: its seek in flight
        self._generation: int | None = None

    def on_assigned(self, partitions: set[Any]) -> None:
        """A new assignment: where each of our partitions resumes, read now, before it
        handles anything (call from ``app.on_partitions_assigned``; does not wait)."""
        mine = sorted(tp.partition for tp in partitions if tp.topic == self.topic)
        self.expected = {}
        self.behind_since = {}
        self._generation = self.app.consumer_generation_id
        self._reading = None
        if mine:
            reading = self.offsets.resume_points(self.app.consumer, self.topic, mine)
            self._reading = asyncio.ensure_future(reading)

    async def admit(self, messages: Sequence[Any]) -> list[Any]:
        """The messages to handle now, in order; a partition with a gap is sought back.

        Never raises (it runs in an agent, outside any retry): if the guard itself fails, the
        batch is handled whole, as it would have been without it."""
        try:
            return await self._admit(messages)
        except Exception:
            log.exception("continuity guard failed; the batch is handled as it came")
            return list(messages)

    async def _admit(self, messages: Sequence[Any]) -> list[Any]:
        await self._ready()
        kept: list[Any] = []
        rewind: dict[int, int] = {}
        for message in messages:
            partition, offset = message.partition, message.offset
            if partition in rewind:
                continue  # after a gap: comes again after the seek
            expected = self.expected.get(partition)
            if expected is not None and offset > expected:
                rewind[partition] = expected
                continue
            kept.append(message)
            self.expected[partition] = max(expected or 0, offset + 1)
            self.behind_since.pop(partition, None)  # it moves
        for partition, offset in rewind.items():
            await self._rewind(partition, offset)
        return kept

    async def _ready(self) -> None:
        reading = self._reading
        if reading is None:
            return
        self._reading = None
        try:
            resume = await asyncio.wait_for(asyncio.shield(reading), self.patience)
        except Exception as exc:  # no guard for this assignment, said loudly
            log.warning(
                "resume offsets unavailable; gaps in this assignment go undetected",
                extra={"kafka.topic": self.topic, "error": str(exc)[:200]},
            )
            return
        if self._generation == self.app.consumer_generation_id:
            for partition, offset in resume.items():
                self.expected.setdefault(partition, offset)

    async def patrol(self) -> None:
        """Read again the partitions whose last messages never arrived (see the module doc).

        Short of its end for ``stall_seconds`` in a row, not merely quiet: a message just
        produced on a rarely written topic is short of its end for a few milliseconds."""
        await self._ready()
        consumer = self.app.consumer
        waiting = {message.tp for message in consumer.unacked}
        now = self.monotonic()
        for tp in consumer.assignment():
            expected = self.expected.get(tp.partition)
            if tp.topic != self.topic or expected is None:
                continue
            high = consumer.highwater(tp)
            if high is None or expected >= high or tp in waiting:
                self.behind_since.pop(tp.partition, None)
                continue
            since = self.behind_since.setdefault(tp.partition, now)
            if now - since >= self.stall_seconds:
                self.behind_since[tp.partition] = now  # one rewind per stall period
                await self._rewind(tp.partition, expected)

    async def _rewind(self, partition: int, offset: int) -> None:
        if partition in self._seeking:
            return  # already on its way back to the gap
        metrics.CONSUMER_GAPS.labels(self.topic).inc()
        log.warning(
            "messages skipped by the consumer; reading the partition again from the gap",
            extra={"kafka.topic": self.topic, "kafka.partition": partition, "kafka.offset": offset},
        )
        # Not awaited: the seek runs on the consumer's thread, which a rebalance may hold while
        # it waits for this very batch to be acknowledged.
        seeking = asyncio.ensure_future(
            self._seek(partition, offset, self.app.consumer_generation_id)
        )
        self._seeking[partition] = seeking
        seeking.add_done_callback(lambda _: self._seeking.pop(partition, None))

    async def _seek(self, partition: int, offset: int, generation: int) -> None:
        if self.app.consumer_generation_id != generation:
            return  # a rebalance came first: Faust seeks every partition again itself
        try:
            await self.seek(self.app, TP(self.topic, partition), offset)
        except Exception as exc:  # e.g. the partition went to another worker meanwhile
            log.warning(
                "could not read the partition again",
                extra={"kafka.topic": self.topic, "kafka.partition": partition, "error": str(exc)},
            )

    async def settled(self) -> None:
        """Until the seeks in flight are done (for tests)."""
        while self._seeking:
            await asyncio.gather(*list(self._seeking.values()), return_exceptions=True)

"""The ingest stage: raw messages in; valid, pseudonymised events out; every refusal dead-lettered.

Nothing here raises because of one message. An exception that escapes an agent while a batch is
in flight makes Faust restart the agent with that batch's offsets committed: every valid event
of the batch would be lost with the bad one. So each message gets a verdict of its own
(``admit``), and each refusal a dead letter that is delivered before the batch is acknowledged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from detectors.alerts import Alert
from detectors.base import Detector
from detectors.models import AccessEvent
from detectors.runner import Runner
from streams import metrics
from streams.backoff import Backoff
from streams.dead_letters import MAPPED_FROM, PAYLOAD, REFERENCE, REPLAYED_FROM, headers_for
from streams.decode import EventTimeBounds, Reason, Rejected, decode
from streams.detection import routing
from streams.detection.agents import DetectionTopics
from streams.detection.backlog import Backlog
from streams.detection.stage import detector_failed
from streams.detection.watermark import SourceProgress
from streams.history.writer import Accepted, HistoryWriter, Refused, WriteResult
from streams.minimise import Minimiser, Redaction
from streams.redactions import Redacted, RedactionReport
from streams.settings import Settings
from streams.topics import GroupOffsets, send_all

log = logging.getLogger(__name__)

# How much of a message too large to forward whole is kept in its reference, to recognise it.
PREFIX_BYTES = 256
# Headers a dead letter keeps from its message.
CARRIED = {REPLAYED_FROM, MAPPED_FROM}


@dataclass(frozen=True)
class Letter:
    """A refused message (as read from Kafka) and why.

    ``value`` replaces the message's bytes when only part of it is refused (one entry of a
    FHIR Bundle): the letter then holds that part alone, for a replay of just what failed.
    """

    message: Any
    rejected: Rejected
    value: bytes | None = None


def admit(
    raw: bytes | None, minimiser: Minimiser, bounds: EventTimeBounds, now: datetime
) -> tuple[AccessEvent, list[Redaction]] | Rejected:
    """The event as everything downstream sees it (patient id pseudonymised, free text
    minimised) and what minimising took out, or why the message is refused."""
    result = decode(raw, bounds=bounds, now=now)
    if isinstance(result, Rejected):
        return result
    try:
        return minimiser.protect(result)
    except Exception as exc:  # a bug of ours: the message is kept for a replay once fixed
        # No event id in the line: it is the producer's raw text (the dead letter has it).
        log.exception("pseudonymisation failed")
        return Rejected(Reason.UNPROCESSABLE, f"pseudonymisation failed ({type(exc).__name__})")


@dataclass
class Triage:
    accepted: list[Accepted] = field(default_factory=list)
    letters: list[Letter] = field(default_factory=list)
    redacted: list[Redacted] = field(default_factory=list)


def triage(
    messages: Iterable[Any], minimiser: Minimiser, bounds: EventTimeBounds, now: datetime
) -> Triage:
    """Split messages into accepted events (with their source position) and dead letters,
    noting what minimisation took out of which event."""
    done = Triage()
    sources: Counter[str] = Counter()
    for message in messages:
        result = admit(message.value, minimiser, bounds, now)
        if isinstance(result, Rejected):
            done.letters.append(Letter(message, result))
            continue
        event, redactions = result
        sources[event.source] += 1
        accepted = Accepted(message.partition, message.offset, event)
        done.accepted.append(accepted)
        if redactions:
            done.redacted.append(Redacted(message.topic, accepted, redactions))
    for source, count in sources.items():  # counted per batch: a label look-up per event cost
        metrics.EVENTS_ACCEPTED.labels(source).inc(count)
    return done


def refused_letters(refused: Sequence[Refused], messages: Iterable[Any]) -> list[Letter]:
    """Events refused after triage (by Elasticsearch, or a document we failed to build)."""
    by_position = {(m.partition, m.offset): m for m in messages}
    return [
        Letter(by_position[(r.accepted.partition, r.accepted.offset)], r.rejected) for r in refused
    ]


class DeadLetters:
    """Delivers letters to the dead-letter topic, retrying until the broker has each one.

    A message the broker would refuse whole (too large with our headers added) goes as a
    reference instead: its source position, size, SHA-256 and a short prefix, so it can still be
    found, and replayed from the source topic while the source keeps it.
    """

    def __init__(self, topic: Any, settings: Settings, backoff: Backoff, minimiser: Minimiser):
        self.topic = topic
        self.max_bytes = settings.dlq_max_message_bytes
        self.backoff = backoff
        self.minimiser = minimiser  # a reason may quote the producer: logged minimised

    async def send(self, letters: Sequence[Letter]) -> None:
        if letters:
            now = datetime.now(UTC)
            await asyncio.gather(*(self._deliver(letter, now) for letter in letters))

    async def _deliver(self, letter: Letter, now: datetime) -> None:
        message, rejected = letter.message, letter.rejected
        metrics.EVENTS_REJECTED.labels(rejected.reason.value).inc()
        log.warning(
            "message dead-lettered",
            extra={
                "dlq.reason": rejected.reason.value,
                "dlq.detail": self.minimiser.scrub_text(rejected.detail),
                "kafka.topic": message.topic,
                "kafka.partition": message.partition,
                "kafka.offset": message.offset,
            },
        )
        headers = headers_for(
            rejected,
            message.topic,
            message.partition,
            message.offset,
            _timestamp_ms(message.timestamp),
            now,
        )
        headers += _carried_headers(message.headers)
        value: bytes = (letter.value if letter.value is not None else message.value) or b""
        whole = len(value) + sum(len(k) + len(v) for k, v in headers) <= self.max_bytes
        forms = [(value, headers)] if whole else []
        forms.append((reference(message), [*headers, (PAYLOAD, REFERENCE)]))

        async def deliver() -> None:
            body, extra = forms[0]
            try:
                await (await self.topic.send(key=message.key, value=body, headers=extra))
            except (MessageSizeTooLargeError, RecordTooLargeError):
                if len(forms) == 1:
                    raise
                forms.pop(0)  # the broker's limit is lower than ours: send the reference
                raise

        await self.backoff.call("dead letter", deliver)


class IngestStage:
    """What the ingest agent does with each batch.

    Verdicts, dead letters, then the history write and the forwarding to detection side by
    side (an Elasticsearch outage delays both, never loses), and the history's refusals
    dead-lettered. The caller acknowledges the batch after.
    """

    def __init__(
        self,
        settings: Settings,
        minimiser: Minimiser,
        writer: HistoryWriter,
        dead_letters: DeadLetters,
        forwarder: Forwarder,
        redactions: RedactionReport,
    ):
        self.minimiser = minimiser
        self.bounds = settings.event_time_bounds()
        self.writer = writer
        self.dead_letters = dead_letters
        self.forwarder = forwarder
        self.redactions = redactions

    async def handle(self, messages: list[Any]) -> WriteResult:
        done = triage(messages, self.minimiser, self.bounds, datetime.now(UTC))
        await asyncio.gather(
            self.dead_letters.send(done.letters), self.redactions.send(done.redacted)
        )
        accepted = done.accepted
        result, _ = await asyncio.gather(
            self.writer.write(accepted), self.forwarder.forward(messages, accepted)
        )
        await self.dead_letters.send(refused_letters(result.refused, messages))
        metrics.HISTORY_DOCUMENTS.inc(result.written)
        metrics.HISTORY_DUPLICATES.inc(result.duplicates)
        log.info(
            "batch indexed",
            extra={
                "batch.size": len(messages),
                "batch.indexed": result.written,
                "batch.duplicates": result.duplicates,
            },
        )
        return result


class Forwarder:
    """Accepted events to the detect partitions that need them, with the clock's progress.

    Detectors that judge each event alone (``Detector.stateless``: a role, a country, a
    destination is in the event) run here, where the event already is: they need no state on
    another partition, and forwarding for them was half of the detect topic's traffic. Their
    alerts go straight to the incidents' partitions, one hop earlier.
    """

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        detectors: dict[str, Detector[Any]],
        topics: DetectionTopics,
        offsets: GroupOffsets,
    ):
        self.app = app
        self.settings = settings
        self.routed = {name: d for name, d in detectors.items() if not d.stateless}
        self.judge = Runner(
            {name: d for name, d in detectors.items() if d.stateless}, on_error=detector_failed
        )
        self.detect_topic = topics.detect
        self.parts_topic = topics.alert_parts
        self.progress = SourceProgress(settings.idle_seconds)
        self.backlog = Backlog(app, settings.topic_events, offsets)
        self._told: tuple[int, dict[int, datetime]] = (0, {})  # last sent to detection
        # Held from observing a batch until its messages are delivered, so a tick of the
        # timer never claims progress for events still on their way.
        self._lock = asyncio.Lock()

    async def forward(self, messages: Sequence[Any], accepted: Sequence[Accepted]) -> None:
        """One message per detect partition (never one per event): the batch's events it
        needs, and the progress they bring the clock to."""
        async with self._lock:
            before = self.progress.snapshot()
            generation = self.app.consumer_generation_id  # before measuring: see DetectClock
            try:
                times = {(a.partition, a.offset): a.event.timestamp for a in accepted}
                for message in messages:
                    position = (message.partition, message.offset)
                    self.progress.observe(*position, times.get(position))
                progress = await self._measured()
                events = [a.event for a in accepted]
                outgoing = routing.forward(
                    events,
                    self.routed,
                    self.settings.topic_partitions,
                    progress,
                    detector_failed,
                    generation,
                )
                alerts = routing.alert_parts(self._judged(events), self.settings.topic_partitions)
                await asyncio.gather(
                    send_all(
                        self.detect_topic,
                        [(None, value, p) for p, values in outgoing.items() for value in values],
                    ),
                    send_all(self.parts_topic, [(None, value, p) for p, value in alerts.items()]),
                )
            except BaseException:
                self.progress.restore(before)  # the batch will come again: claim nothing
                raise
            self._told = (generation, progress)

    def _judged(self, events: Iterable[AccessEvent]) -> list[Alert]:
        """The alerts of the detectors that judge each event alone (a replayed batch sends
        them again: the incidents stage merges by alert id and event id, adding nothing)."""
        judge, alerts = self.judge, []
        for event in events:
            for name, key in judge.routes(event):
                alerts += judge.step(name, key, event)
        metrics.ALERT_FINDINGS.inc(len(alerts))
        return alerts

    async def tick(self) -> None:
        """The progress alone, when it moved without events (idle advancement)."""
        async with self._lock:
            generation = self.app.consumer_generation_id
            progress = await self._measured()
            if not progress or (generation, progress) == self._told:
                return
            tick = routing.tick_only(progress, generation)
            partitions = range(self.settings.topic_partitions)
            await send_all(self.detect_topic, [(None, tick, p) for p in partitions])
            self._told = (generation, progress)

    def forget(self, partitions: Iterable[int]) -> None:
        self.progress.forget(partitions)
        self._told = (0, {})  # the detect side forgets too: tell again

    async def _measured(self) -> dict[int, datetime]:
        behind = await self.backlog.measure(self.progress)
        return self.progress.progress(behind)


def reference(message: Any) -> bytes:
    """What stands in the dead-letter topic for a message too large to copy there."""
    value: bytes = message.value or b""
    return json.dumps(
        {
            "dead_letter_reference": {
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "bytes": len(value),
                "sha256": hashlib.sha256(value).hexdigest(),
                "prefix": value[:PREFIX_BYTES].decode("utf-8", errors="replace"),
            }
        }
    ).encode()


def _carried_headers(headers: Any) -> list[tuple[str, bytes]]:
    """Keep a replay's mark, so a message that fails again shows it was already replayed, and
    the FHIR or ATNA record a mapped event came from."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return [(key, value) for key, value in items if key in CARRIED]


def _timestamp_ms(timestamp: float | None) -> int | None:
    return None if timestamp is None else int(timestamp * 1000)

"""FHIR AuditEvents and IHE ATNA messages in: mapped onto the contract, then ingested as usual.

Each format has a topic (``<events>-fhir``, ``<events>-atna``) and an agent that maps its
messages (``adapters/``) and publishes the access events to the events topic, keyed by practice
like any producer's, where the one ingest path (dead letters, pseudonymisation, history,
detection) takes them. Why not a second decoder inside ingest: one foreign record may be several
accesses (a Bundle; an AuditEvent naming several patients), while the ingest path's guarantees
(the history chained per partition of the events topic, detection's routing) rest on one message
being one event.

A foreign message is acknowledged only once the broker has every event and every dead letter it
gave. A crash in between maps the same message again into the same event ids (they derive from
the record), so the history keeps one copy and alerts keep their ids. Every mapped event carries
the position of the record it came from (header ``guetteur.mapped_from``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from adapters import atna, fhir
from adapters.common import Refusal, Translation
from adapters.table import MappingPolicy
from streams import metrics
from streams.backoff import Backoff
from streams.continuity import Continuity
from streams.dead_letters import MAPPED_FROM
from streams.decode import Reason, Rejected
from streams.ingest import DeadLetters, Letter
from streams.settings import Settings
from streams.topics import GroupOffsets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    name: str
    topic: str
    translate: Callable[[bytes, MappingPolicy], Translation]


def formats(settings: Settings) -> list[Format]:
    return [
        Format("fhir", settings.fhir_topic, fhir.translate),
        Format("atna", settings.atna_topic, atna.translate),
    ]


def translate_safely(form: Format, raw: bytes | None, table: MappingPolicy) -> Translation:
    """Never raises: a mapping bug refuses the message (kept for a replay once fixed)."""
    try:
        return form.translate(raw or b"", table)
    except Exception as exc:
        log.exception("mapping failed", extra={"foreign.format": form.name})
        problem = f"mapping failed ({type(exc).__name__}), a bug: replay once fixed"
        return Translation(refusals=[Refusal("message", problem, raw or b"")], records=1)


def encode(event: dict[str, Any]) -> tuple[bytes | None, bytes]:
    """(key, value) as a producer of contract JSON would send it: keyed by practice."""
    practice = event.get("practice_id")
    key = practice.encode() if isinstance(practice, str) else None
    return key, json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


class TranslateStage:
    """What a format's agent does with each batch; the caller acknowledges it after."""

    def __init__(
        self, form: Format, table: MappingPolicy, events_topic: Any, dead_letters: DeadLetters
    ):
        self.form = form
        self.table = table
        self.events_topic = events_topic
        self.dead_letters = dead_letters

    async def handle(self, messages: list[Any]) -> int:
        sends: list[Any] = []
        letters: list[Letter] = []
        mapped = refused = 0
        for message in messages:
            translation = translate_safely(self.form, message.value, self.table)
            origin = [(MAPPED_FROM, _position(message).encode())]
            for event in translation.events:
                key, value = encode(event)
                sends.append(await self.events_topic.send(key=key, value=value, headers=origin))
            letters += [self._letter(message, refusal) for refusal in translation.refusals]
            refused += translation.records - translation.mapped
            mapped += translation.mapped
            metrics.FOREIGN_EVENTS.labels(self.form.name).inc(len(translation.events))
        await asyncio.gather(*sends, self.dead_letters.send(letters))
        metrics.FOREIGN_RECORDS.labels(self.form.name, "mapped").inc(mapped)
        metrics.FOREIGN_RECORDS.labels(self.form.name, "refused").inc(refused)
        return len(sends)

    def _letter(self, message: Any, refusal: Refusal) -> Letter:
        detail = f"{self.form.name}: {refusal.reason}"
        return Letter(message, Rejected(Reason.UNMAPPABLE, detail), refusal.original)


def install(
    app: Any,
    settings: Settings,
    table: MappingPolicy,
    events_topic: Any,
    dead_letters: DeadLetters,
    offsets: GroupOffsets,
) -> list[Continuity]:
    """An agent per format; returns their continuity guards (for patrols and assignments)."""
    guards = []
    for form in formats(settings):
        guard = Continuity(app, form.topic, offsets)
        stage = TranslateStage(form, table, events_topic, dead_letters)
        topic = app.topic(form.topic, value_type=bytes, value_serializer="raw")
        app.agent(topic, name=f"translate-{form.name}")(_agent(settings, stage, guard))
        guards.append(guard)
    return guards


def _agent(
    settings: Settings, stage: TranslateStage, guard: Continuity
) -> Callable[[Any], AsyncIterator[int]]:
    async def translate(stream: Any) -> AsyncIterator[int]:
        """Batches acked when the loop comes back, i.e. once every send was acknowledged;
        whatever fails retries the batch, whose event ids do not change."""
        backoff = Backoff()
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            messages = await guard.admit([event.message for event in batch])
            yield await backoff.call(f"{stage.form.name} batch", partial(stage.handle, messages))

    # Faust names an agent's logs after its function: say which format it maps.
    translate.__name__ = translate.__qualname__ = f"translate_{stage.form.name}"
    return translate


def _position(message: Any) -> str:
    return f"{message.topic}:{message.partition}:{message.offset}"

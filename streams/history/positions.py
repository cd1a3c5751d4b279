"""Each history record against the Kafka message it claims to come from (``verify``).

A record's chain names the topic, partition and offset it was read from. Nothing tied that
claim to Kafka: a forged record could claim a real one's offset. Walking a chain in order walks
its partition in offset order, so one sequential read of the partition checks every claim:
- the message at a record's offset must carry the record's event id;
- an offset past the partition's end was never written;
- a valid event skipped between two records' offsets must be stored under another offset (a
  redelivered duplicate) or be a dead letter; otherwise it is ``missing``: its record was
  deleted (the chain shows a gap too, and this names the event) or never written.

Offsets Kafka no longer retains cannot be checked; they are counted, not guessed about.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from streams.dead_letters import read_all as dead_letters
from streams.decode import Rejected, decode
from streams.history.audit import Finding, Record
from streams.history.chain import chain_fields
from streams.history.document import month_index
from streams.settings import Settings


@dataclass(frozen=True)
class Skipped:
    """A valid event between two records' offsets, with no record at its own offset."""

    topic: str
    partition: int
    offset: int
    event_id: str
    index: str  # the monthly index its record belongs in


@dataclass
class PositionCheck:
    settings: Settings
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0
    beyond_retention: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    _consumer: KafkaConsumer | None = None
    _reading: TopicPartition | None = None
    _messages: Iterator[ConsumerRecord] = field(default_factory=lambda: iter(()))
    _bounds: tuple[int, int] = (0, 0)
    _next: int = 0  # the first offset of the partition not read yet
    _started: bool = False  # a record of this partition was matched: gaps count from there
    _whole: bool = False

    def follow(self, records: Iterator[Record], whole: bool) -> Iterator[Record]:
        """Passes one chain's records through, checking each against Kafka on the way.

        ``whole``: the walk starts at the chain's first record, so valid events before it count
        as missing too; a window's walk starts mid-partition and counts from its first record.
        """
        self._whole = whole
        for record in records:
            self._check(record)
            yield record

    def finish(self, client: Elasticsearch, purged: set[str]) -> None:
        """The skipped valid events that are stored nowhere, are no dead letter, and do not
        belong in a monthly index that retention removed (``purged``, from signed records)."""
        if self._consumer is not None:
            self._consumer.close()
        if not self.skipped:
            return
        self.skipped = [s for s in self.skipped if s.index not in purged]
        if not self.skipped:
            return
        stored = _stored_event_ids(client, self.settings, {s.event_id for s in self.skipped})
        letters = {
            (int(d.headers.get("source_partition", -1)), int(d.headers.get("source_offset", -1)))
            for d in dead_letters(self.settings)
        }
        for skip in self.skipped:
            if skip.event_id not in stored and (skip.partition, skip.offset) not in letters:
                self.findings.append(
                    Finding(
                        "missing",
                        f"the valid event at offset {skip.offset} of {skip.topic} has no record "
                        "in the history and is no dead letter",
                        skip.partition,
                        event_id=skip.event_id,
                    )
                )

    def _check(self, record: Record) -> None:
        fields = chain_fields(record.source)
        topic, partition, offset = (
            fields.get("topic"),
            fields.get("partition"),
            fields.get("offset"),
        )
        if (
            not isinstance(topic, str)
            or not isinstance(partition, int)
            or not isinstance(offset, int)
        ):
            return  # no position claimed: the chain audit reports the record
        self._read(TopicPartition(topic, partition))
        first, end = self._bounds
        if offset < first:
            self.beyond_retention += 1
            return
        if offset >= end:
            self._claim(record, f"claims offset {offset} of {topic}, which ends at {end - 1}")
            return
        if offset < self._next:
            return  # a second claim on an offset: the chain audit reports it
        message = self._message_at(offset)
        self.checked += 1
        self._started = True
        found = _event_id(message.value) if message is not None else None
        if found != record.source.get("event", {}).get("id"):
            held = f"holds event {found}" if found else "holds no readable event"
            self._claim(record, f"claims offset {offset} of {topic}, which {held}")

    def _read(self, tp: TopicPartition) -> None:
        if self._reading == tp:
            return
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka_servers(),
                enable_auto_commit=False,
                client_id="guetteur-verify",
            )
        consumer = self._consumer
        consumer.assign([tp])
        first = consumer.beginning_offsets([tp]).get(tp, 0)
        end = consumer.end_offsets([tp]).get(tp, 0)
        self._reading, self._bounds, self._next, self._started = tp, (first, end), first, False
        consumer.seek(tp, first)
        self._messages = self._poll(tp, end)

    def _poll(self, tp: TopicPartition, end: int) -> Iterator[ConsumerRecord]:
        assert self._consumer is not None
        while self._consumer.position(tp) < end:
            for batch in self._consumer.poll(timeout_ms=1000).values():
                yield from batch

    def _message_at(self, offset: int) -> ConsumerRecord | None:
        """Reads forward to ``offset``; the valid events passed on the way are remembered."""
        for message in self._messages:
            self._next = message.offset + 1
            if message.offset == offset:
                return message
            if message.offset > offset:
                return None
            self._passed(message)
        return None

    def _passed(self, message: ConsumerRecord) -> None:
        if not self._started and not self._whole:
            return  # before the first record walked (a window starts mid-partition)
        event = decode(message.value or b"", bounds=self.settings.event_time_bounds())
        if not isinstance(event, Rejected):
            index = month_index(self.settings, event)
            self.skipped.append(
                Skipped(message.topic, message.partition, message.offset, event.event_id, index)
            )

    def _claim(self, record: Record, why: str) -> None:
        self.findings.append(
            Finding(
                "inserted",
                why,
                int(chain_fields(record.source).get("partition", -1)),
                str(record.seq),
                str(record.source.get("event", {}).get("id", record.doc_id)),
                record.index,
            )
        )


def _event_id(value: bytes | None) -> str | None:
    try:
        parsed: Any = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    event_id = parsed.get("event_id") if isinstance(parsed, dict) else None
    return event_id if isinstance(event_id, str) else None


def _stored_event_ids(client: Elasticsearch, settings: Settings, event_ids: set[str]) -> set[str]:
    stored: set[str] = set()
    wanted = sorted(event_ids)
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        response = client.search(
            index=settings.history_index,
            query={"terms": {"event.id": chunk}},
            size=len(chunk),
            source_includes=["event.id"],
        )
        stored |= {hit["_source"]["event"]["id"] for hit in response["hits"]["hits"]}
    return stored

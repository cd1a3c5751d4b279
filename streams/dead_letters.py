"""The dead-letter topic: refused messages kept verbatim, with why and where they came from.

The value is the original bytes, untouched, so a replay re-submits exactly what the producer
sent; the reason and the source position travel in headers. Reading it back (``dlq list``)
needs no consumer group: dead letters are never "consumed away".
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.decode import Rejected
from streams.producer import Record, publish_records
from streams.settings import Settings
from streams.topics import read_topic

PREFIX = "guetteur."
# Header a replay carries, kept if the message is refused again (see streams.ingest).
REPLAYED_FROM = PREFIX + "replayed_from"
# Header of an event mapped from a FHIR or ATNA record: that record's topic:partition:offset.
MAPPED_FROM = PREFIX + "mapped_from"
# Set to REFERENCE on a letter whose value stands for a message too large to copy whole.
PAYLOAD = PREFIX + "payload"
REFERENCE = b"reference"


def headers_for(
    rejected: Rejected,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    now: datetime,
) -> list[tuple[str, bytes]]:
    fields = {
        "reason": rejected.reason.value,
        "detail": rejected.detail,
        "source_topic": topic,
        "source_partition": str(partition),
        "source_offset": str(offset),
        "source_timestamp_ms": "" if timestamp_ms is None else str(timestamp_ms),
        "dead_lettered_at": now.astimezone(UTC).isoformat(),
    }
    return [(PREFIX + key, value.encode()) for key, value in fields.items()]


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def position(self) -> str:
        """``PARTITION:OFFSET`` in the dead-letter topic: how an operator names one letter."""
        return f"{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return self.headers.get("reason", "unknown")

    @property
    def source_reference(self) -> dict[str, Any] | None:
        """Where the original is, for a letter that stands for a message too large to copy."""
        if self.headers.get(PAYLOAD.removeprefix(PREFIX)) != REFERENCE.decode():
            return None
        found: dict[str, Any] = json.loads(self.value)["dead_letter_reference"]
        return found

    def row(self) -> dict[str, Any]:
        """What ``dlq list`` shows: where it was, why, when; never the payload itself."""
        h = self.headers
        return {
            "dlq_position": self.position,
            "dead_lettered_at": h.get("dead_lettered_at"),
            "reason": self.reason,
            "detail": h.get("detail"),
            "source_topic": h.get("source_topic"),
            "source_position": f"{h.get('source_partition')}:{h.get('source_offset')}",
            "bytes": (self.source_reference or {}).get("bytes", len(self.value)),
            "replayed_from": h.get("replayed_from"),
        }


def count(settings: Settings) -> int:
    """How many dead letters the topic holds, from its offsets: nothing is read."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(), client_id="guetteur-dlq-count"
    )
    try:
        partitions = consumer.partitions_for_topic(settings.topic_dlq) or set()
        assigned = [TopicPartition(settings.topic_dlq, p) for p in partitions]
        ends = consumer.end_offsets(assigned)
        starts = consumer.beginning_offsets(assigned)
        return sum(ends[tp] - starts[tp] for tp in assigned)
    finally:
        consumer.close()


def read_all(settings: Settings, timeout: float = 30.0) -> Iterator[DeadLetter]:
    """Every dead letter currently in the topic, oldest first per partition."""
    for record in read_topic(settings, settings.topic_dlq, "guetteur-dlq-reader", timeout):
        yield DeadLetter(
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            headers={
                k.removeprefix(PREFIX): v.decode(errors="replace")
                for k, v in (record.headers or [])
                if k.startswith(PREFIX)
            },
        )


def replay(
    settings: Settings, letters: Iterable[DeadLetter], on_sent: Callable[[int], None] | None = None
) -> tuple[dict[str, int], list[DeadLetter]]:
    """Re-submit the original bytes where they were first read, marked with where they came from.

    That is the events topic, or for a FHIR AuditEvent or ATNA message its own topic, to be
    mapped again. A letter that is only a reference is replayed from the source topic, if it
    still holds the message (and its SHA-256 matches). Returns how many were sent to each
    topic, and the letters that could not be, because their original is gone.
    """
    gone: list[DeadLetter] = []
    by_topic: dict[str, list[Record]] = {}
    for letter in letters:
        value = original(settings, letter)
        if value is None:
            gone.append(letter)
            continue
        mark = [(REPLAYED_FROM, f"dlq:{letter.position}".encode())]
        by_topic.setdefault(replay_topic(settings, letter), []).append(
            Record(value, letter.key, mark)
        )
    sent = {
        topic: publish_records(settings, topic, records, on_sent)
        for topic, records in by_topic.items()
    }
    return sent, gone


def replay_topic(settings: Settings, letter: DeadLetter) -> str:
    foreign = {settings.fhir_topic, settings.atna_topic}
    source = letter.headers.get("source_topic", "")
    return source if source in foreign else settings.topic_events


def original(settings: Settings, letter: DeadLetter, timeout: float = 10.0) -> bytes | None:
    """The bytes the producer sent: the letter's own, or read back from the source topic."""
    source = letter.source_reference
    if source is None:
        return letter.value
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(),
        enable_auto_commit=False,
        client_id="guetteur-dlq-source",
        max_partition_fetch_bytes=max(1_048_576, int(source["bytes"]) + 65_536),
    )
    try:
        tp = TopicPartition(str(source["topic"]), int(source["partition"]))
        consumer.assign([tp])
        consumer.seek(tp, int(source["offset"]))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.offset != int(source["offset"]):
                        return None  # compacted or expired: the source no longer holds it
                    value = record.value or b""
                    digest = hashlib.sha256(value).hexdigest()
                    return value if digest == source["sha256"] else None
        return None
    finally:
        consumer.close()

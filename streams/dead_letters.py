"""The dead-letter topic: refused messages kept verbatim, with why and where they came from.

The value is the original bytes, untouched, so a replay re-submits exactly what the producer
sent; the reason and the source position travel in headers. Reading it back (``dlq list``)
needs no consumer group: dead letters are never "consumed away".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.decode import Rejected
from streams.producer import Record, publish_records
from streams.settings import Settings

PREFIX = "guetteur."
# Header a replay carries, kept if the message is refused again (see streams.app).
REPLAYED_FROM = PREFIX + "replayed_from"


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
            "bytes": len(self.value),
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
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(),
        enable_auto_commit=False,
        client_id="guetteur-dlq-reader",
    )
    try:
        partitions = consumer.partitions_for_topic(settings.topic_dlq) or set()
        assigned = [TopicPartition(settings.topic_dlq, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {settings.topic_dlq} took over {timeout:.0f}s")
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
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
    finally:
        consumer.close()


def replay(
    settings: Settings, letters: Iterable[DeadLetter], on_sent: Callable[[int], None] | None = None
) -> int:
    """Re-submit the original bytes to the events topic, marked with where they came from."""
    records = (
        Record(letter.value, letter.key, [(REPLAYED_FROM, f"dlq:{letter.position}".encode())])
        for letter in letters
    )
    return publish_records(settings, settings.topic_events, records, on_sent)

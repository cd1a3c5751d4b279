"""Publishing raw event bytes to Kafka (demo, replays, tests), batched and flushed once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer

from streams.settings import Settings


def practice_key(payload: bytes) -> bytes | None:
    """Partition by practice so one practice's events keep their order; None when unreadable."""
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):  # hostile input is published as-is, unkeyed
        return None
    practice = value.get("practice_id") if isinstance(value, dict) else None
    return practice.encode() if isinstance(practice, str) else None


@dataclass(frozen=True)
class Record:
    value: bytes | None  # None: a tombstone (deletes its key from a compacted topic)
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def publish(
    settings: Settings,
    topic: str,
    payloads: Iterable[bytes],
    on_sent: Callable[[int], None] | None = None,
    timeout: float = 60.0,
) -> int:
    """Send every payload as-is (malformed ones too), keyed by practice; returns the count."""
    records = (Record(payload, practice_key(payload)) for payload in payloads)
    return publish_records(settings, topic, records, on_sent, timeout)


def publish_records(
    settings: Settings,
    topic: str,
    records: Iterable[Record],
    on_sent: Callable[[int], None] | None = None,
    timeout: float = 60.0,
) -> int:
    """Send every record, then wait for every acknowledgement (raises if the broker refused one,
    or gave no answer within ``timeout`` seconds)."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_servers(),
        acks="all",
        linger_ms=20,
        client_id="guetteur-publish",
        max_block_ms=int(timeout * 1000),
        bootstrap_timeout_ms=int(min(timeout, 10) * 1000),
    )
    futures: list[Any] = []
    try:
        for record in records:
            futures.append(
                producer.send(topic, value=record.value, key=record.key, headers=record.headers)
            )
            if on_sent is not None and len(futures) % 500 == 0:
                on_sent(len(futures))
        producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
    finally:
        producer.close()
    if on_sent is not None:
        on_sent(len(futures))
    return len(futures)

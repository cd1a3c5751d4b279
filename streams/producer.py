"""Publishing raw event bytes to Kafka (demo, replays, tests), batched and flushed once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaProducer

from streams.settings import Settings


def practice_key(payload: bytes) -> bytes | None:
    """Partition by practice so one practice's events keep their order; None when unreadable."""
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    practice = value.get("practice_id") if isinstance(value, dict) else None
    return practice.encode() if isinstance(practice, str) else None


def publish(
    settings: Settings,
    topic: str,
    payloads: Iterable[bytes],
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send every payload as-is (malformed ones too) and wait for every ack; returns the count."""
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_servers(),
        acks="all",
        linger_ms=20,
        client_id="guetteur-publish",
    )
    sent = 0
    futures: list[Any] = []
    try:
        for payload in payloads:
            futures.append(producer.send(topic, value=payload, key=practice_key(payload)))
            sent += 1
            if on_sent is not None and sent % 500 == 0:
                on_sent(sent)
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused a message
    finally:
        producer.close()
    if on_sent is not None:
        on_sent(sent)
    return sent

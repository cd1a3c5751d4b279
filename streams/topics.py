"""Kafka topics Guetteur owns, created on purpose (the broker does not auto-create them)."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.settings import Settings


class TopicError(Exception):
    pass


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet and wait until every partition has a leader.

    A consumer that joins before a new topic's metadata has settled gets an empty assignment
    and sits idle until its next metadata refresh (minutes), so "created" is not enough.
    Returns the topics this call created.
    """
    wanted = {
        settings.topic_events: settings.topic_partitions,
        settings.topic_dlq: 1,
        settings.topic_alerts: settings.topic_partitions,
        settings.detect_topic: settings.topic_partitions,
        settings.alert_parts_topic: settings.topic_partitions,
    }
    # Dead letters are raw producer bytes, raw patient ids included: kept only long enough to be
    # looked at and replayed, not for as long as the broker keeps everything else.
    dlq_ms = int(settings.dlq_retention_days * 24 * 3600 * 1000)
    configs = {settings.topic_dlq: {"retention.ms": str(dlq_ms)}}
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers(), client_id="guetteur-admin")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=settings.topic_replication,
                topic_configs=configs.get(name, {}),
            )
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another worker won the race
                admin.create_topics(missing)
        _wait_for_leaders(admin, list(wanted), timeout)
        return [topic.name for topic in missing]
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, topics: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with suppress(KafkaError):
            described = admin.describe_topics(topics)
            if all(_has_leaders(topic) for topic in described) and len(described) == len(topics):
                return
        if time.monotonic() > deadline:
            raise TopicError(
                f"topics {topics} have no leader after {timeout:.0f}s; is Kafka healthy?"
            )
        time.sleep(0.2)


def _has_leaders(topic: dict[str, object]) -> bool:
    partitions = topic.get("partitions")
    if topic.get("error_code") or not isinstance(partitions, list) or not partitions:
        return False
    return all(p.get("leader_id", -1) >= 0 for p in partitions)


def partition_count(settings: Settings, topic: str) -> int:
    """How many partitions ``topic`` has, as the broker says (the clock needs every one)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers(), client_id="guetteur-admin")
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    partitions = described[0].get("partitions") if described else None
    if not isinstance(partitions, list) or not partitions:
        raise TopicError(f"topic {topic} has no partitions; was it created (guetteur worker does)?")
    return len(partitions)


async def send_all(topic: Any, messages: list[tuple[Any, ...]]) -> None:
    """Send (key, value[, partition]) messages, then wait until every one is delivered."""
    deliveries = [
        await topic.send(key=key, value=value, partition=rest[0] if rest else None)
        for key, value, *rest in messages
    ]
    if deliveries:
        await asyncio.gather(*deliveries)

"""Kafka topics Guetteur owns, created on purpose (the broker does not auto-create them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

from faust.types import TP
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
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
        settings.fhir_topic: settings.topic_partitions,
        settings.atna_topic: settings.topic_partitions,
        settings.topic_dlq: 1,
        settings.topic_alerts: settings.topic_partitions,
        settings.detect_topic: settings.topic_partitions,
        settings.alert_parts_topic: settings.topic_partitions,
        settings.checkpoint_topic: 1,
        settings.redaction_topic: 1,
        settings.exceptions_topic: 1,
    }
    # Dead letters are raw producer bytes, raw patient ids included: kept only long enough to be
    # looked at and replayed, not for as long as the broker keeps everything else.
    dlq_ms = int(settings.dlq_retention_days * 24 * 3600 * 1000)
    configs = {
        settings.topic_dlq: {"retention.ms": str(dlq_ms)},
        # Never expired by time: the checkpoints must outlive the history they certify.
        settings.checkpoint_topic: {"cleanup.policy": "compact", "retention.ms": "-1"},
        # The current set of exceptions: compaction keeps each one's last version (or deletion).
        settings.exceptions_topic: {"cleanup.policy": "compact", "retention.ms": "-1"},
    }
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


def read_topic(
    settings: Settings, topic: str, client_id: str, timeout: float = 30.0
) -> Iterator[ConsumerRecord]:
    """Every record a topic holds now, oldest first per partition; an absent topic is empty."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_servers(), enable_auto_commit=False, client_id=client_id
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over {timeout:.0f}s")
            for records in consumer.poll(timeout_ms=1000).values():
                yield from records
    finally:
        consumer.close()


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


class GroupOffsets:
    """The consumer group's committed offsets, as the broker holds them.

    Faust keeps no reliable record of them for a partition it was just given (it forgets them
    on revocation), so the clock and the continuity guards ask the broker. One admin connection,
    opened on first use and used from one thread at a time (the calls take turns).
    """

    def __init__(self, settings: Settings, group: str):
        self.settings = settings
        self.group = group
        self._admin: KafkaAdminClient | None = None
        self._turn = asyncio.Lock()

    async def committed(self, topic: str, partitions: list[int]) -> dict[int, int]:
        """Committed offset per partition; absent where the group has committed none."""
        async with self._turn:
            return await asyncio.to_thread(self._committed, topic, partitions)

    async def resume_points(
        self, consumer: Any, topic: str, partitions: list[int]
    ) -> dict[int, int]:
        """Where the group resumes each partition: its committed offset, or, where it has
        committed none, the partition's first offset (the worker reads from the earliest)."""
        committed = await self.committed(topic, partitions)
        never = [TP(topic, p) for p in partitions if p not in committed]
        first = await consumer.earliest_offsets(*never) if never else {}
        return {**{tp.partition: int(offset) for tp, offset in first.items()}, **committed}

    def _committed(self, topic: str, partitions: list[int]) -> dict[int, int]:
        from kafka import TopicPartition

        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.settings.kafka_servers(), client_id="guetteur-offsets"
            )
        wanted = [TopicPartition(topic, p) for p in partitions]
        found = self._admin.list_group_offsets({self.group: wanted}).get(self.group, {})
        return {
            tp.partition: meta.offset
            for tp, meta in found.items()
            if meta is not None and meta.offset is not None and meta.offset >= 0
        }

    def close(self) -> None:
        if self._admin is not None:
            with suppress(Exception):
                self._admin.close()
            self._admin = None


async def await_metadata(app: Any, topics: list[str]) -> None:
    """Wait until the producer knows these topics' partitions.

    Faust places a table's changelog write with the producer's partitioner at once, from
    whatever metadata the producer has; a worker that never wrote to that changelog before (a
    fresh one, or one just given the table's partitions) has none, and the write raises
    ``TypeError: 'NoneType' object is not iterable`` (seen in a failover run, for good: nothing
    else makes the producer fetch it). aiokafka's ``partitions_for`` fetches it if needed.
    """
    producer = app.producer._ensure_producer()
    for topic in topics:
        await producer.partitions_for(topic)


async def track_topics(app: Any, topics: list[str]) -> None:
    """Keep these topics in the producer's cluster metadata for good.

    aiokafka's client starts with no tracked topic, which means "fetch them all"; the first
    topic it looks up by name (a changelog Faust created after the producer started) becomes
    the *only* one fetched, and the next refresh replaces the metadata with that one topic's.
    A batch queued for a topic dropped that way has no leader and waits until it expires (20
    minutes with Faust's defaults); the forwarder waited for that delivery holding its lock, so
    nothing else could send to the detect topic and bring its metadata back, and the commit
    Faust had started waited for the same batch, and the rebalance for that commit: a worker
    stalled for good (a failover run, after a SIGSTOP). Tracked explicitly, every refresh
    includes them.
    """
    producer = app.producer._ensure_producer()  # the AIOKafkaProducer under Faust's
    for topic in topics:
        producer.client.add_topic(topic)
    await await_metadata(app, topics)

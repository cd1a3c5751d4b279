"""Kafka topics Guetteur owns, created on purpose (the broker does not auto-create them)."""

from __future__ import annotations

from contextlib import suppress

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.settings import Settings


def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    wanted = {settings.topic_events: settings.topic_partitions}
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers(), client_id="guetteur-admin")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=settings.topic_replication)
            for name, partitions in wanted.items()
            if name not in existing
        ]
        if missing:
            with suppress(TopicAlreadyExistsError):  # another worker won the race
                admin.create_topics(missing)
        return [topic.name for topic in missing]
    finally:
        admin.close()

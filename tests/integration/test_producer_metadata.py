"""The producer keeps the metadata of every topic the worker writes (``track_topics``).

Found in a failover run, a worker stalled for good: aiokafka's client fetches the metadata of
all topics until a first topic is looked up by name (a changelog Faust creates after the
producer started); from then on it fetches only the topics looked up that way, and a refresh
drops the others. A batch queued for a dropped topic has no leader and waits until it expires
(20 minutes with Faust's defaults), and the forwarder, the commit and the rebalance waited
for it. Against the real broker: the batch queued across such a refresh is delivered.
"""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.settings import Settings
from streams.topics import ensure_topics, track_topics

pytestmark = pytest.mark.integration


async def _queued_across_a_narrowing_refresh(settings: Settings, track: bool) -> bool:
    """Whether a batch for the detect topic, queued when a later topic is looked up and the
    metadata refreshed, is delivered within 10 s."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_servers(),
        linger_ms=3000,  # the batch stays queued across the refresh below
        request_timeout_ms=12_000,  # a stuck batch expires in 12 s, not 20 min: not delivered
    )
    await producer.start()
    try:
        # Nothing tracked yet: the refresh fetches every topic (Faust creating its changelogs
        # at start-up does this), so the detect topic is known without being tracked.
        await producer.client.force_metadata_update()
        if track:
            app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=lambda: producer))
            await track_topics(app, [settings.detect_topic])
        else:
            await producer.partitions_for(settings.detect_topic)  # known, as after a full fetch
        delivery = await producer.send(settings.detect_topic, b"routed events", partition=0)
        delivery.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen, not raised
        late = f"{settings.app_id}-late-{uuid.uuid4().hex[:6]}"
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
        try:
            admin.create_topics([NewTopic(late, 1, 1)])
        finally:
            admin.close()
        await producer.partitions_for(late)  # looked up by name, as Faust's changelogs are
        await producer.client.force_metadata_update()
        try:
            await asyncio.wait_for(asyncio.shield(delivery), timeout=10)
        except (TimeoutError, KafkaError):  # still waiting, or expired waiting for a leader
            return False
        return True
    finally:
        await producer.stop()


def test_a_batch_queued_across_a_metadata_refresh_is_delivered(isolated: Settings) -> None:
    ensure_topics(isolated)
    assert asyncio.run(_queued_across_a_narrowing_refresh(isolated, track=True))


def test_without_tracking_aiokafka_drops_the_topic_and_the_batch_waits(
    isolated: Settings,
) -> None:
    """The cause, kept as a test: if aiokafka stops dropping untracked topics this fails, and
    ``track_topics`` may go."""
    ensure_topics(isolated)
    assert not asyncio.run(_queued_across_a_narrowing_refresh(isolated, track=False))

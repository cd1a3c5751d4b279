"""The Faust application: topics and agents, built from settings.

Agents stay thin (decode, call pure code, write in bulk); everything they call is importable
and testable without Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import faust
from pydantic import ValidationError

from detectors.models import AccessEvent
from streams.elastic import async_client
from streams.history import HistoryWriter
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    settings.worker_dir().mkdir(parents=True, exist_ok=True)
    # Refuse to start without a key (unless in demo mode): never index a raw patient id.
    pseudonymizer = load_pseudonymizer(settings, settings.demo_key_file())
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_servers()}",
        datadir=str(settings.worker_dir()),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        # Raw bytes in: decoding is ours, so a malformed message is seen and reported, not lost
        # inside a codec.
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
    )
    events_topic = app.topic(settings.topic_events, value_type=bytes, value_serializer="raw")

    @app.agent(events_topic, name="ingest")
    async def ingest(stream: Any) -> AsyncIterator[int]:
        """Validate each event and index the valid ones into the access history, in batches."""
        client = async_client(settings)
        writer = HistoryWriter(client, settings.history_index, pseudonymizer)
        try:
            async for batch in stream.take(settings.batch_size, within=settings.batch_seconds):
                valid = [event for event in map(_decode, batch) if event is not None]
                indexed = await writer.write(valid)
                log.info(
                    "batch indexed",
                    extra={"batch.size": len(batch), "batch.indexed": indexed},
                )
                yield indexed
        finally:
            await client.close()

    return app


def _decode(raw: bytes) -> AccessEvent | None:
    try:
        return AccessEvent.model_validate_json(raw)
    except ValidationError as exc:
        log.warning("invalid event skipped", extra={"error.message": str(exc).splitlines()[0]})
        return None

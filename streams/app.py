"""The Faust application: topics and agents, built from settings.

Agents stay thin (decode, call pure code, write in bulk); everything they call is importable
and testable without Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from detectors.models import AccessEvent
from streams import metrics
from streams.dead_letters import REPLAYED_FROM, headers_for
from streams.decode import Rejected, decode
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
        # Raw bytes in: decoding is ours, so a malformed message is seen and dead-lettered,
        # not lost inside a codec.
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
    )
    events_topic = app.topic(settings.topic_events, value_type=bytes, value_serializer="raw")
    dlq_topic = app.topic(settings.topic_dlq, value_type=bytes, value_serializer="raw")

    @app.agent(events_topic, name="ingest")
    async def ingest(stream: Any) -> AsyncIterator[int]:
        """Validate each message; dead-letter the bad ones; index the good ones in bulk.

        ``take_events`` acks a batch only when the loop comes back for the next one, i.e. after
        the dead letters are delivered and Elasticsearch acknowledged the documents.
        """
        client = async_client(settings)
        writer = HistoryWriter(client, settings.history_index, pseudonymizer)
        try:
            async for batch in stream.take_events(
                settings.batch_size, within=settings.batch_seconds
            ):
                accepted = await _triage(batch, dlq_topic)
                indexed = await writer.write(accepted)
                metrics.HISTORY_DOCUMENTS.inc(indexed)
                log.info(
                    "batch indexed",
                    extra={"batch.size": len(batch), "batch.indexed": indexed},
                )
                yield indexed
        finally:
            await client.close()

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app


async def _triage(batch: Sequence[Any], dlq_topic: Any) -> list[AccessEvent]:
    """Split a batch into valid events and dead letters; wait until every letter is delivered."""
    accepted: list[AccessEvent] = []
    deliveries = []
    now = datetime.now(UTC)
    for event in batch:
        message = event.message
        result = decode(message.value)
        if isinstance(result, Rejected):
            metrics.EVENTS_REJECTED.labels(result.reason.value).inc()
            log.warning(
                "message dead-lettered",
                extra={
                    "dlq.reason": result.reason.value,
                    "dlq.detail": result.detail,
                    "kafka.partition": message.partition,
                    "kafka.offset": message.offset,
                },
            )
            headers = headers_for(
                result,
                message.topic,
                message.partition,
                message.offset,
                _timestamp_ms(message.timestamp),
                now,
            )
            headers += _carried_headers(message.headers)
            deliveries.append(
                await dlq_topic.send(key=message.key, value=message.value, headers=headers)
            )
        else:
            metrics.EVENTS_ACCEPTED.labels(result.source).inc()
            accepted.append(result)
    if deliveries:
        await asyncio.gather(*deliveries)
    return accepted


def _carried_headers(headers: Any) -> list[tuple[str, bytes]]:
    """Keep a replay's mark, so a message that fails again shows it was already replayed."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    return [(key, value) for key, value in items if key == REPLAYED_FROM]


def _timestamp_ms(timestamp: float | None) -> int | None:
    return None if timestamp is None else int(timestamp * 1000)

"""The Faust application: topics and agents, built from settings.

Agents stay thin (decode, call pure code, write in bulk); everything they call is importable
and testable without Kafka.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from detectors.exceptions import Exceptions
from detectors.policy import load_policy
from detectors.registry import all_detectors
from streams import diagnostics, foreign, metrics
from streams.backoff import Backoff
from streams.continuity import Continuity
from streams.detection import agents as detection_agents
from streams.detection.routing import key_partitioner
from streams.elastic import async_client
from streams.exceptions import ExceptionFeed
from streams.history.checkpoints import Checkpointer, ensure_separate, load_checkpoint_keys
from streams.history.writer import ChainHeads, HistoryWriter
from streams.ingest import DeadLetters, Forwarder, IngestStage
from streams.minimise import Minimiser
from streams.pseudonym import load_pseudonymizer
from streams.redactions import RedactionReport
from streams.settings import Settings
from streams.topics import GroupOffsets, partition_count, track_topics

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    settings.worker_dir().mkdir(parents=True, exist_ok=True)
    # Refuse to start without a key (unless in demo mode): never index a raw patient id.
    pseudonymizer = load_pseudonymizer(settings, settings.demo_key_file())
    checkpoint_keys = load_checkpoint_keys(settings)
    ensure_separate(checkpoint_keys, [pseudonymizer.current, *pseudonymizer.previous])
    heads = ChainHeads()
    metrics.WORKER_UP.labels(settings.app_id).set(1)
    policy = load_policy(settings.policy_file)
    # Analysts' exceptions: loaded before the agents judge anything, then kept up to date.
    exceptions = ExceptionFeed(settings, Exceptions())
    detectors = all_detectors(policy, exceptions.exceptions)
    minimiser = Minimiser(policy.privacy, policy.export, pseudonymizer)
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
        broker_session_timeout=settings.kafka_session_timeout,
        producer_compression_type=None if settings.compression == "none" else settings.compression,
        # Keys are placed by CRC-32 (a C call) rather than Kafka's murmur2 (pure Python here):
        # the tables' entries and the events forwarded to them agree (streams.detection.routing).
        producer_partitioner=key_partitioner,
    )
    events_topic = app.topic(settings.topic_events, value_type=bytes, value_serializer="raw")
    dlq_topic = app.topic(settings.topic_dlq, value_type=bytes, value_serializer="raw")
    redaction_topic = app.topic(
        settings.redaction_topic, key_serializer="raw", value_serializer="raw"
    )
    checkpoint_topic = app.topic(
        settings.checkpoint_topic, key_serializer="raw", value_serializer="raw"
    )

    async def send_checkpoint(key: bytes, value: bytes) -> None:
        await (await checkpoint_topic.send(key=key, value=value))

    offsets = GroupOffsets(settings, settings.app_id)
    detection_topics, detection_guards = detection_agents.install(
        app,
        settings,
        detectors,
        cache(lambda: partition_count(settings, settings.topic_events)),
        offsets,
        exceptions.ready,
    )
    forwarder = Forwarder(app, settings, detectors, detection_topics, offsets)
    continuity = Continuity(app, settings.topic_events, offsets)
    dead_letters = DeadLetters(dlq_topic, settings, Backoff(), minimiser)
    redactions = RedactionReport(redaction_topic, Backoff())

    # FHIR AuditEvents and ATNA messages: mapped onto the contract, into the events topic.
    foreign_guards = foreign.install(
        app, settings, policy.mapping, events_topic, dead_letters, offsets
    )
    guards = [continuity, *detection_guards, *foreign_guards]

    @app.task  # type: ignore[untyped-decorator]
    async def on_sigusr2_dump_tasks() -> None:
        diagnostics.install(app)

    @app.task  # type: ignore[untyped-decorator]
    async def keep_produced_topics_known() -> None:
        """Every topic this worker writes stays in the producer's metadata (``track_topics``)."""
        written = [
            settings.topic_events,
            settings.topic_dlq,
            settings.redaction_topic,
            settings.checkpoint_topic,
            settings.detect_topic,
            settings.alert_parts_topic,
            settings.topic_alerts,
            *(table.changelog_topic.get_topic_name() for table in app.tables.values()),
        ]
        await Backoff().call("track produced topics", partial(track_topics, app, written))

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def patrol_partitions() -> None:
        """Partitions whose last messages the consumer skipped are read again."""
        for guard in guards:
            try:
                await guard.patrol()
            except Exception:  # the next patrol tries again; a timer that raises stops for good
                log.exception("continuity patrol failed", extra={"kafka.topic": guard.topic})

    @app.timer(interval=1.0)  # type: ignore[untyped-decorator]
    async def follow_exceptions() -> None:
        """New and deleted exceptions apply within a second, in every worker, no restart."""
        try:
            await exceptions.poll()
        except Exception:  # the next poll tries again; a timer that raises would stop for good
            log.exception("exceptions not read")

    @app.timer(interval=settings.tick_seconds)  # type: ignore[untyped-decorator]
    async def tick_in_silence() -> None:
        """The clock moves with the wall clock while sources are quiet (idle advancement)."""
        try:
            await forwarder.tick()
        except Exception:  # the next tick tries again; a timer that raises would stop for good
            log.exception("clock tick failed")

    @app.agent(events_topic, name="ingest")
    async def ingest(stream: Any) -> AsyncIterator[int]:
        """Each batch through the ingest stage (``streams.ingest``), then a checkpoint if due.

        ``take_events`` acks a batch only when the loop comes back for the next one, i.e. after
        the dead letters, the documents and the forwarded events are all acknowledged (the
        writer retries until Elasticsearch answers). Whatever else fails retries the whole
        batch, which is idempotent (documents and alerts are keyed): an exception escaping
        here would have Faust commit the batch unprocessed.
        """
        client = async_client(settings)
        backoff = Backoff()
        writer = HistoryWriter(
            client,
            settings,
            heads,
            backoff,
            fingerprints=pseudonymizer.fingerprints(),
            chain_keys=checkpoint_keys,
        )
        stage = IngestStage(settings, minimiser, writer, dead_letters, forwarder, redactions)
        checkpointer = Checkpointer(client, settings, checkpoint_keys[0], send_checkpoint, backoff)

        async def handle(messages: list[Any]) -> int:
            result = await stage.handle(messages)
            await checkpointer.maybe_write(heads.heads, datetime.now(UTC))
            return result.written

        try:
            await backoff.call("exceptions", exceptions.ready)
            async for batch in stream.take_events(
                settings.batch_size, within=settings.batch_seconds
            ):
                messages = await continuity.admit([event.message for event in batch])
                yield await backoff.call("ingest batch", partial(handle, messages))
        finally:
            await checkpointer.write_last(heads.heads, datetime.now(UTC))
            await client.close()

    async def forget_chain_heads(sender: Any, partitions: set[Any], **kwargs: Any) -> None:
        """Another worker may have written these chains meanwhile: re-read their heads.

        On revocation and on assignment both, so a write that was still in flight during the
        rebalance cannot leave a stale head behind.
        """
        mine = [tp.partition for tp in partitions if tp.topic == settings.topic_events]
        heads.forget(mine)
        forwarder.forget(mine)

    async def note_resume_points(sender: Any, partitions: set[Any], **kwargs: Any) -> None:
        for guard in (continuity, *foreign_guards):
            guard.on_assigned(partitions)

    app.on_partitions_revoked.connect(forget_chain_heads)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(forget_chain_heads)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(note_resume_points)  # type: ignore[arg-type]

    @app.page("/metrics")
    async def prometheus_metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return app

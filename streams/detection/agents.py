"""The detection agents: ``detect`` runs the detectors on routed events, ``incidents`` merges
their alerts into incidents, indexes them and publishes them on the alerts topic.

Both acknowledge a batch only after what it produced is delivered (alerts sent, documents
acknowledged) and its state written, so a crash replays the batch instead of losing it; the
detectors are idempotent per event and alerts are merged by id, so the replay adds nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import aiohttp
import faust

from detectors.alerts import Alert
from detectors.base import Detector
from detectors.runner import AlertBook
from streams import metrics
from streams.backoff import Backoff
from streams.console import triage
from streams.continuity import Continuity
from streams.detection import routing
from streams.detection.sink import AlertSink
from streams.detection.stage import DetectStage, batch_offsets, decoded
from streams.elastic import async_client
from streams.paging import Pager
from streams.settings import Settings
from streams.topics import GroupOffsets, await_metadata, send_all

log = logging.getLogger(__name__)


def _table(app: faust.App, name: str, settings: Settings) -> Any:
    # use_partitioner: writes go to the partition of the key's hash, the same partition the
    # routed message with that (JSON-serialised) key came from, so writes may be batched.
    return app.Table(
        name,
        default=None,
        partitions=settings.topic_partitions,
        schema=faust.Schema(key_serializer="json", value_serializer="json"),
        use_partitioner=True,
    )


@dataclass(frozen=True)
class DetectionTopics:
    """Where the ingest stage hands over: events to route, alerts already found."""

    detect: Any
    alert_parts: Any


def install(
    app: faust.App,
    settings: Settings,
    detectors: dict[str, Detector[Any]],
    source_partitions: Callable[[], int],
    offsets: GroupOffsets,
    exceptions_ready: Callable[[], Awaitable[None]],
) -> tuple[DetectionTopics, list[Continuity]]:
    """Register the topics, tables and agents of detection; return the topics the ingest stage
    writes to and the continuity guards of the agents' topics. ``exceptions_ready`` returns
    once the analysts' exceptions are loaded: nothing is judged before."""
    detect_topic = app.topic(settings.detect_topic, key_serializer="raw", value_serializer="raw")
    parts_topic = app.topic(
        settings.alert_parts_topic, key_serializer="raw", value_serializer="raw"
    )
    alerts_topic = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
    states_table = _table(app, "detector-states", settings)
    incidents_table = _table(app, "incidents", settings)
    rebalanced = {"detect": True}

    async def on_rebalance(sender: Any, partitions: set[Any], **kwargs: Any) -> None:
        rebalanced["detect"] = True  # the table now holds other keys: rebuild the runner

    async def on_recovered(sender: Any, **kwargs: Any) -> None:
        # Rebuilt again once the table holds every key of its partitions: a runner built from a
        # table still being recovered never schedules the pending decisions of the keys not yet
        # read back, and they were never taken (seen as lost deadline incidents in failover).
        rebalanced["detect"] = True

    guards = [
        Continuity(app, topic, offsets)
        for topic in (settings.detect_topic, settings.alert_parts_topic, settings.topic_alerts)
    ]
    detect_guard, incidents_guard, page_guard = guards

    async def note_resume_points(sender: Any, partitions: set[Any], **kwargs: Any) -> None:
        for guard in guards:
            guard.on_assigned(partitions)

    app.on_partitions_assigned.connect(on_rebalance)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(note_resume_points)  # type: ignore[arg-type]
    app.on_rebalance_complete.connect(on_recovered)  # type: ignore[arg-type]

    @app.agent(detect_topic, name="detect")
    async def detect(stream: Any) -> AsyncIterator[int]:
        """Forwarded batches in, the detectors over them, alerts out to their incidents'
        partitions; states written once per batch, before the batch is acknowledged.

        Whatever fails is retried (the whole batch, from the stored states): an exception
        escaping here would have Faust acknowledge the batch undetected."""
        changelog = states_table.changelog_topic.get_topic_name()
        stage = DetectStage(
            app,
            settings,
            detectors,
            states_table,
            parts_topic,
            source_partitions(),
            rebalanced,
            writable=partial(await_metadata, app, [changelog]),
        )
        backoff = Backoff()
        await backoff.call("exceptions", exceptions_ready)
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            messages = await detect_guard.admit([event.message for event in batch])
            yield await backoff.call("detect batch", partial(stage.handle, messages))

    def known_incident(alert_id: str) -> Alert | None:
        stored = incidents_table.get(alert_id)
        if stored is None:
            return None
        try:
            return Alert.model_validate_json(json.dumps(stored))
        except ValueError as exc:  # written by an incompatible version, or damaged
            metrics.INTERNAL_UNDECODABLE.labels("incidents table").inc()
            log.error(
                "stored incident unreadable; merged anew from its next evidence",
                extra={"alert.id": alert_id, "error": str(exc)[:200]},
            )
            return None

    @app.agent(parts_topic, name="incidents")
    async def incidents(stream: Any) -> AsyncIterator[int]:
        client = async_client(settings)
        sink = AlertSink(client, settings, Backoff())
        backoff = Backoff()
        writable = partial(await_metadata, app, [incidents_table.changelog_topic.get_topic_name()])

        async def handle(messages: list[Any]) -> int:
            book = AlertBook(known_incident)
            for message in messages:
                book.add(decoded(routing.decode_alert_parts, message) or [])
            changed = book.alerts
            if changed:
                await sink.write(list(changed.values()))
                published = [(a.alert_id.encode(), _encoded(a)) for a in changed.values()]
                await send_all(alerts_topic, published)
                await writable()
                for alert_id, alert in changed.items():
                    incidents_table[alert_id] = alert.model_dump(mode="json")
                _count(changed, book.new)
                traced = {"alerts.updated": len(changed), "batch.offsets": batch_offsets(messages)}
                log.info("incidents updated", extra=traced)
            return len(changed)

        try:
            async for batch in stream.take_events(
                settings.batch_size, within=settings.batch_seconds
            ):
                messages = await incidents_guard.admit([event.message for event in batch])
                yield await backoff.call("incidents batch", partial(handle, messages))
        finally:
            await client.close()

    @app.agent(alerts_topic, name="page")
    async def page(stream: Any) -> AsyncIterator[int]:
        """Incidents to on-call; its own agent, so an Alertmanager outage delays only paging."""
        client = async_client(settings)
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                held = settings.worker_dir() / "held-pages.jsonl"
                triaged = partial(triage.ending_pages, client, settings)
                pager = Pager(settings, session, Backoff(), held, triaged)
                # SIGHUP: the receiver was fixed; send the incidents it refused again.
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: asyncio.ensure_future(pager.retry_held())
                )
                async for batch in stream.take_events(
                    settings.batch_size, within=settings.batch_seconds
                ):
                    messages = await page_guard.admit([event.message for event in batch])
                    alerts = [decoded(Alert.model_validate_json, m) for m in messages]
                    yield await pager.page_safely([a for a in alerts if a is not None])
        finally:
            await client.close()

    return DetectionTopics(detect_topic, parts_topic), guards


def _count(changed: dict[str, Alert], new: set[str]) -> None:
    now = datetime.now(UTC)
    for alert_id, alert in changed.items():
        labels = (alert.rule_id, alert.severity.value)
        counter = metrics.ALERTS if alert_id in new else metrics.ALERT_UPDATES
        counter.labels(*labels).inc()
        delay = (now - alert.last_seen).total_seconds()
        metrics.ALERT_LATENCY.labels(alert.rule_id).observe(max(0.0, delay))


def _encoded(alert: Alert) -> bytes:
    return alert.model_dump_json().encode()

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
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import faust

from detectors.alerts import Alert, merge
from detectors.base import Detector
from detectors.runner import SEPARATOR, Runner, log_error
from streams import metrics
from streams.backoff import Backoff
from streams.detection import routing
from streams.detection.sink import AlertSink
from streams.detection.states import TableStates
from streams.detection.watermark import DetectClock, SourceProgress, encode_tick
from streams.elastic import async_client
from streams.paging import Pager
from streams.settings import Settings

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


def install(
    app: faust.App,
    settings: Settings,
    detectors: dict[str, Detector[Any]],
    source_partitions: Callable[[], int],
) -> Any:
    """Register the topics, tables and agents of detection; return the detect topic."""
    detect_topic = app.topic(settings.detect_topic, key_serializer="json", value_serializer="raw")
    parts_topic = app.topic(
        settings.alert_parts_topic, key_serializer="json", value_serializer="raw"
    )
    alerts_topic = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")
    states_table = _table(app, "detector-states", settings)
    incidents_table = _table(app, "incidents", settings)
    rebalanced = {"detect": True}

    async def on_rebalance(sender: Any, partitions: set[Any], **kwargs: Any) -> None:
        rebalanced["detect"] = True  # the table now holds other keys: rebuild the runner

    app.on_partitions_assigned.connect(on_rebalance)  # type: ignore[arg-type]

    @app.agent(detect_topic, name="detect")
    async def detect(stream: Any) -> AsyncIterator[int]:
        runner: Runner | None = None
        states: TableStates | None = None
        clock = DetectClock(source_partitions())
        sizes = StateSizes(detectors)
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            if runner is None or states is None or rebalanced["detect"]:
                states = TableStates(states_table, detectors)
                reached = runner.clock if runner is not None else None
                runner = Runner(detectors, states, on_error=detector_failed)
                runner.clock = reached
                rebalanced["detect"] = False
            alerts: list[Alert] = []
            for event in batch:
                item = _decoded(routing.decode, event.message)
                if isinstance(item, dict):
                    clock.tick(event.message.partition, item)
                elif item is not None:
                    alerts += runner.step(item.detector, item.key, item.event)
            now = clock.now(_assigned(app, settings.detect_topic))
            if now is not None:
                alerts += runner.advance(now)
            await _send_all(parts_topic, [(a.alert_id, _encoded(a)) for a in alerts])
            written = states.flush()
            sizes.maybe_report(states_table)
            metrics.ALERT_FINDINGS.inc(len(alerts))
            log.info(
                "detect batch",
                extra={
                    "batch.size": len(batch),
                    "batch.alerts": len(alerts),
                    "batch.states": written,
                },
            )
            yield len(alerts)

    @app.agent(parts_topic, name="incidents")
    async def incidents(stream: Any) -> AsyncIterator[int]:
        client = async_client(settings)
        sink = AlertSink(client, settings, Backoff())
        try:
            async for batch in stream.take_events(
                settings.batch_size, within=settings.batch_seconds
            ):
                changed, new = _merge_batch(incidents_table, batch)
                if changed:
                    await sink.write(list(changed.values()))
                    published = [(a.alert_id.encode(), _encoded(a)) for a in changed.values()]
                    await _send_all(alerts_topic, published)
                    for alert_id, alert in changed.items():
                        incidents_table[alert_id] = alert.model_dump(mode="json")
                    _count(changed, new)
                    log.info("incidents updated", extra={"alerts.updated": len(changed)})
                yield len(changed)
        finally:
            await client.close()

    @app.agent(alerts_topic, name="page")
    async def page(stream: Any) -> AsyncIterator[int]:
        """Incidents to on-call; its own agent, so an Alertmanager outage delays only paging."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            pager = Pager(settings, session, Backoff())
            # SIGHUP: the receiver was fixed; send the incidents it refused again.
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(pager.retry_held())
            )
            async for batch in stream.take_events(
                settings.batch_size, within=settings.batch_seconds
            ):
                alerts = [_decoded(Alert.model_validate_json, event.message) for event in batch]
                yield await pager.page([alert for alert in alerts if alert is not None])

    return detect_topic


class StateSizes:
    """Keys per detector in the local table, counted at most every ``every`` seconds (a full
    scan of the table: not per batch)."""

    def __init__(self, detectors: dict[str, Detector[Any]], every: float = 15.0):
        self.detectors = detectors
        self.every = every
        self.last = 0.0

    def maybe_report(self, table: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        counts = dict.fromkeys(self.detectors, 0)
        for key in list(table.keys()):
            name = key.split(SEPARATOR, 1)[0]
            if name in counts:
                counts[name] += 1
        for name, count in counts.items():
            metrics.DETECTOR_STATES.labels(name).set(count)


def _assigned(app: faust.App, topic: str) -> set[int]:
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}


async def backlog(app: faust.App, topic: str, progress: SourceProgress) -> dict[int, bool]:
    """Per assigned partition of ``topic``: are there events this worker has not handled yet?"""
    behind = {}
    for tp in app.consumer.assignment():
        if tp.topic != topic:
            continue
        highwater = app.consumer.highwater(tp)
        handled = progress.next_offset.get(tp.partition)
        if handled is None:  # asked once per assignment: it may wait on the consumer thread
            handled = await _resumed_from(app.consumer, tp)
            if handled is not None:
                progress.next_offset[tp.partition] = handled
        behind[tp.partition] = highwater is None or handled is None or handled < highwater
        if highwater is not None and handled is not None:
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - handled))
    return behind


async def _resumed_from(consumer: Any, tp: Any) -> int | None:
    """Where this worker started reading a partition it has handled nothing of yet.

    Not the fetch position: messages already fetched may wait unhandled in Faust's buffers,
    and a partition judged caught up too early would let the clock claim the wall clock over
    them. The group's committed offset (Faust's record of it, set when the partition was
    assigned) is where handling resumes; with none, the partition's first offset.
    """
    committed = consumer._committed_offset.get(tp)
    if committed is not None:
        return int(committed)
    earliest = await consumer.earliest_offsets(tp)
    found = earliest.get(tp)
    return None if found is None else int(found)


async def send_ticks(detect_topic: Any, partitions: int, progress: dict[int, datetime]) -> None:
    """The source progress to every detect partition (after the events it covers were
    delivered)."""
    tick = encode_tick(progress)
    await _send_all(detect_topic, [(None, tick, partition) for partition in range(partitions)])


def detector_failed(name: str, event_id: str, exc: Exception) -> None:
    """A detector bug costs that detector that event (its state is left as it was)."""
    metrics.DETECTOR_ERRORS.labels(name).inc()
    log_error(name, event_id, exc)


T = TypeVar("T")


def _decoded(parse: Callable[[bytes], T], message: Any) -> T | None:
    """An internal message parsed, or None (counted, logged) if it cannot be: only our own
    workers write these topics, so this is a bug or a stranger, and must not stop the agent."""
    try:
        return parse(message.value)
    except Exception as exc:
        metrics.INTERNAL_UNDECODABLE.labels(message.topic).inc()
        log.error(
            "internal message could not be decoded; skipped",
            extra={
                "kafka.topic": message.topic,
                "kafka.partition": message.partition,
                "kafka.offset": message.offset,
                "error": f"{type(exc).__name__}: {str(exc)[:200]}",
            },
        )
        return None


def _merge_batch(table: Any, batch: Any) -> tuple[dict[str, Alert], set[str]]:
    """Fold a batch of single alerts into their incidents: those that changed, and which of
    them are new."""
    changed: dict[str, Alert] = {}
    new: set[str] = set()
    for event in batch:
        part = _decoded(Alert.model_validate_json, event.message)
        if part is None:
            continue
        current = changed.get(part.alert_id)
        if current is None:
            stored = table.get(part.alert_id)
            current = Alert.model_validate_json(json.dumps(stored)) if stored is not None else None
            if current is None:
                new.add(part.alert_id)
        merged = part if current is None else merge(current, part)
        if merged is not current:
            changed[part.alert_id] = merged
    return changed, new


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


async def _send_all(topic: Any, messages: list[tuple[Any, ...]]) -> None:
    """Send (key, value[, partition]) messages, then wait until every one is delivered."""
    deliveries = [
        await topic.send(key=key, value=value, partition=rest[0] if rest else None)
        for key, value, *rest in messages
    ]
    if deliveries:
        await asyncio.gather(*deliveries)

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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import aiohttp
import faust

from detectors.alerts import Alert
from detectors.base import Detector
from detectors.runner import SEPARATOR, AlertBook, Runner, log_error
from streams import metrics
from streams.backoff import Backoff
from streams.console import triage
from streams.continuity import Continuity
from streams.detection import routing
from streams.detection.sink import AlertSink
from streams.detection.states import TableStates
from streams.detection.watermark import DetectClock
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
                book.add(_decoded(routing.decode_alert_parts, message) or [])
            changed = book.alerts
            if changed:
                await sink.write(list(changed.values()))
                published = [(a.alert_id.encode(), _encoded(a)) for a in changed.values()]
                await send_all(alerts_topic, published)
                await writable()
                for alert_id, alert in changed.items():
                    incidents_table[alert_id] = alert.model_dump(mode="json")
                _count(changed, book.new)
                log.info(
                    "incidents updated",
                    extra={"alerts.updated": len(changed), "batch.offsets": _offsets(messages)},
                )
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
                    alerts = [_decoded(Alert.model_validate_json, m) for m in messages]
                    yield await pager.page_safely([a for a in alerts if a is not None])
        finally:
            await client.close()

    return DetectionTopics(detect_topic, parts_topic), guards


class DetectStage:
    """The detect agent's work on one batch, and what it keeps between batches: the runner
    over the table's states, and the clock."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        detectors: dict[str, Detector[Any]],
        states_table: Any,
        parts_topic: Any,
        source_partitions: int,
        rebalanced: dict[str, bool],
        writable: Callable[[], Awaitable[None]],
    ):
        """``writable``: waits until the states table can be written (``await_metadata``)."""
        self.app = app
        self.writable = writable
        self.settings = settings
        self.detectors = detectors
        self.states_table = states_table
        self.parts_topic = parts_topic
        self.rebalanced = rebalanced
        self.clock = DetectClock(source_partitions, settings.event_time_bounds().max_future)
        self.sizes = StateSizes(detectors)
        self.runner: Runner | None = None
        self.states: TableStates | None = None

    def _fresh(self) -> tuple[Runner, TableStates]:
        """After a rebalance (the table holds other keys) or a failed batch (the cache may hold
        half of it): the runner again, over the states as stored."""
        if self.runner is None or self.states is None or self.rebalanced["detect"]:
            # A partition given back to us is read again from its committed offset: the
            # progress it told us before is ahead of the events we are about to re-read.
            self.clock.forget(self.app.consumer_generation_id)
            self.states = TableStates(self.states_table, self.detectors)
            # A fresh clock too: after a failed batch, the decisions it took at its clock were
            # not stored, and a runner that kept that clock would not take them again until the
            # clock moved further (seen in a test once its ticks were believed). Deciding again
            # up to any clock is idempotent: what was decided is no longer pending in the table.
            self.runner = Runner(self.detectors, self.states, on_error=detector_failed)
            self.rebalanced["detect"] = False
        return self.runner, self.states

    async def handle(self, messages: list[Any]) -> int:
        await self._recovered()
        try:
            return await self._handle(messages)
        except BaseException:
            self.rebalanced["detect"] = True  # the retry starts again from the stored states
            raise

    async def _handle(self, messages: list[Any]) -> int:
        runner, states = self._fresh()
        alerts: list[Alert] = []
        routed = 0
        started = time.monotonic()
        for message in messages:
            forwarded = _decoded(routing.decode, message)
            if forwarded is None:
                continue
            for index, name, key in forwarded.routes:
                alerts += runner.step(name, key, forwarded.events[index])
            routed += len(forwarded.routes)
            refused = self.clock.tick(message.partition, forwarded.progress, forwarded.generation)
            if refused:
                _not_believed(message, refused)
        assigned = _assigned(self.app, self.settings.detect_topic)
        now = self.clock.now(assigned)
        if now is not None:
            alerts += runner.advance(now)
        detected = time.monotonic()
        parts = routing.alert_parts(alerts, self.settings.topic_partitions)
        await send_all(self.parts_topic, [(None, value, p) for p, value in parts.items()])
        sent = time.monotonic()
        await self.writable()
        written = states.flush()
        flushed = time.monotonic()
        self.sizes.maybe_report(self.states_table)
        metrics.ALERT_FINDINGS.inc(len(alerts))
        log.info(
            "detect batch",
            extra={
                "batch.size": len(messages),
                "batch.offsets": _offsets(messages),
                "batch.routed": routed,
                "batch.alerts": len(alerts),
                "detect.clock": None if now is None else now.isoformat(),
                "detect.unclaimed": self.clock.unclaimed(assigned) if now is None else [],
                "detect.waiting": runner.waiting(),
                "batch.states": written,
                "batch.detect_s": round(detected - started, 3),
                "batch.send_s": round(sent - detected, 3),
                "batch.flush_s": round(flushed - sent, 3),
            },
        )
        return len(alerts)

    async def _recovered(self, patience: float = 5.0) -> None:
        """Wait (a little) while the tables are being recovered after a rebalance: a batch
        fetched before it would otherwise run on states not yet read back. Bounded, so a
        recovery that never ends (another rebalance) cannot hold the batch, and the rebalance
        waiting for it, forever."""
        waited = 0.0
        while getattr(self.app, "in_recovery", False) and waited < patience:
            await asyncio.sleep(0.05)
            waited += 0.05


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


def _offsets(messages: list[Any]) -> str:
    """Which offsets a batch held, per partition ("2:40-57 5:3-9"), to trace a message."""
    spans: dict[int, list[int]] = {}
    for message in messages:
        span = spans.setdefault(message.partition, [message.offset, message.offset])
        span[0], span[1] = min(span[0], message.offset), max(span[1], message.offset)
    return " ".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(spans.items()))


def _assigned(app: faust.App, topic: str) -> set[int]:
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}


def _not_believed(message: Any, sources: list[int]) -> None:
    """A progress claim too far in the future: only a stranger or a bug sends one."""
    _refused_internal(
        message,
        "clock progress too far in the future; not believed",
        {"source.partitions": sources},
    )


def _refused_internal(message: Any, why: str, details: dict[str, Any]) -> None:
    """A message on an internal topic that is skipped: counted and logged with its position."""
    metrics.INTERNAL_UNDECODABLE.labels(message.topic).inc()
    position = {
        "kafka.topic": message.topic,
        "kafka.partition": message.partition,
        "kafka.offset": message.offset,
    }
    log.error(why, extra={**position, **details})


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
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
        _refused_internal(
            message, "internal message could not be decoded; skipped", {"error": error}
        )
        return None


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

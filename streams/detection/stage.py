"""The detect agent's work on one batch (``DetectStage``): the detectors over routed events,
alerts out to their incidents' partitions, states written before the batch is acknowledged;
and the helpers the detection agents share to read and trace internal messages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust

from detectors.alerts import Alert
from detectors.base import Detector
from detectors.runner import SEPARATOR, Runner, log_error
from streams import metrics
from streams.detection import routing
from streams.detection.states import TableStates
from streams.detection.watermark import DetectClock
from streams.settings import Settings
from streams.topics import send_all

log = logging.getLogger(__name__)


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
            forwarded = decoded(routing.decode, message)
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
                "batch.offsets": batch_offsets(messages),
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


def batch_offsets(messages: list[Any]) -> str:
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


def decoded(parse: Callable[[bytes], T], message: Any) -> T | None:
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

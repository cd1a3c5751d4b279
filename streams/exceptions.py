"""Detection exceptions, live in every worker: a compacted Kafka topic is the set, and a log in
Elasticsearch records every change (who, when, why).

The topic (``<app id>-exceptions``, one partition, compacted) holds each exception under its id,
and a tombstone once it is deleted: compaction keeps exactly the current set, and any worker, or
``guetteur detect --exceptions kafka``, rebuilds it by reading the topic from the start. Each
worker keeps reading it (``ExceptionFeed``, polled every second), so a new exception applies
within seconds, without a restart; the detectors consult the same ``Exceptions`` object.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition

from detectors.exceptions import DetectionException, Exceptions
from detectors.registry import RULE_IDS
from streams.audit.search import search_all
from streams.producer import Record, publish_records
from streams.settings import ConfigError, Settings
from streams.topics import read_topic

log = logging.getLogger(__name__)


class ExceptionError(ValueError):
    """An exception that cannot be created or deleted; the message says why."""


def new_exception(
    fields: dict[str, Any], approved_by: str, now: datetime | None = None
) -> DetectionException:
    """An exception from a request's fields (rule, scope, reason, expiry), approved by the
    requester; a clear error names what is wrong."""
    moment = now or datetime.now(UTC)
    rule = fields.get("rule_id")
    if rule not in RULE_IDS:
        raise ExceptionError(f"rule_id: {rule!r} is not a rule ({', '.join(RULE_IDS)})")
    values = {
        "exception_id": f"exc-{uuid.uuid4().hex[:12]}",
        "starts": moment.isoformat(),
        **{k: v for k, v in fields.items() if v not in (None, "")},
        "approved_by": approved_by,
        "created_at": moment.isoformat(),
    }
    try:
        return DetectionException.model_validate(values)
    except ValueError as exc:
        raise ExceptionError(_readable(exc)) from None


def create(client: Elasticsearch, settings: Settings, exception: DetectionException) -> None:
    """Live in every worker once Kafka acknowledges; logged in Elasticsearch first."""
    _log_change(client, settings, "created", exception, exception.approved_by, exception.reason)
    _publish(settings, exception.exception_id, exception)


def delete(
    client: Elasticsearch, settings: Settings, exception_id: str, by: str, why: str
) -> DetectionException:
    current = _existing(settings, exception_id, why, "deleting")
    _log_change(client, settings, "deleted", current, by, why)
    _publish(settings, exception_id, None)
    return current


def expire(
    client: Elasticsearch,
    settings: Settings,
    exception_id: str,
    by: str,
    why: str,
    now: datetime | None = None,
) -> DetectionException:
    """End an exception now (it stays listed, as expired, and still covers what came before)."""
    current = _existing(settings, exception_id, why, "expiring")
    moment = max(now or datetime.now(UTC), current.starts + timedelta(microseconds=1))
    ended = current.model_copy(update={"expires": min(current.expires, moment)})
    _log_change(client, settings, "expired", ended, by, why)
    _publish(settings, exception_id, ended)
    return ended


def _existing(settings: Settings, exception_id: str, why: str, doing: str) -> DetectionException:
    """The exception a change is about, and a reason for the change, or a clear error."""
    current = read_all(settings).by_id.get(exception_id)
    if current is None:
        raise ExceptionError(f"no exception {exception_id}; see `guetteur exceptions list`")
    if len(why.strip()) < 3:
        raise ExceptionError(f"{doing} an exception needs a reason")
    return current


def _publish(settings: Settings, exception_id: str, exception: DetectionException | None) -> None:
    """Its new version on the topic, or a tombstone (``None``): compaction keeps the last."""
    value = exception.model_dump_json().encode() if exception is not None else None
    publish_records(settings, settings.exceptions_topic, [Record(value, exception_id.encode())])


def read_all(settings: Settings) -> Exceptions:
    """The current set, from the topic's start (absent topic: none)."""
    exceptions = Exceptions()
    for record in read_topic(settings, settings.exceptions_topic, "guetteur-exceptions-reader"):
        _apply(exceptions, record.key, record.value)
    return exceptions


def read_file(path: Path) -> Exceptions:
    """Exceptions as ``guetteur exceptions list --json`` prints them, one per line."""
    exceptions = Exceptions()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--exceptions: cannot read {path}: {exc}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            exceptions.put(DetectionException.model_validate_json(line))
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not an exception ({_readable(exc)})") from None
    return exceptions


class ExceptionFeed:
    """The worker's live copy of the exceptions: ``ready`` loads the whole topic before the
    agents judge their first event; ``poll`` then applies each change (a timer calls it)."""

    def __init__(self, settings: Settings, exceptions: Exceptions) -> None:
        self.settings = settings
        self.exceptions = exceptions
        self._consumer: KafkaConsumer | None = None
        self._loaded = asyncio.Event()
        self._loading = asyncio.Lock()

    async def ready(self) -> None:
        """Returns once the set held when the worker started is loaded (agents await it)."""
        if self._loaded.is_set():
            return
        async with self._loading:
            if not self._loaded.is_set():
                await asyncio.to_thread(self._load)
                self._loaded.set()

    async def poll(self) -> int:
        """Apply what the topic got since the last call; returns how many changes."""
        await self.ready()
        changes = await asyncio.to_thread(self._poll_once)
        if changes:
            log.info("exceptions updated", extra={"exceptions.active": len(self.exceptions)})
        return changes

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()

    def _load(self) -> None:
        consumer = self._open()
        tp = TopicPartition(self.settings.exceptions_topic, 0)
        end = consumer.end_offsets([tp])[tp]
        while consumer.position(tp) < end:
            self._poll_once(timeout_ms=1000)
        log.info("exceptions loaded", extra={"exceptions.active": len(self.exceptions)})

    def _poll_once(self, timeout_ms: int = 0) -> int:
        consumer = self._consumer or self._open()
        changes = 0
        for records in consumer.poll(timeout_ms=timeout_ms).values():
            for record in records:
                _apply(self.exceptions, record.key, record.value)
                changes += 1
        return changes

    def _open(self) -> KafkaConsumer:
        """The topic has one partition (``ensure_topics`` creates it before the worker runs)."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_servers(),
            enable_auto_commit=False,
            client_id="guetteur-exceptions-feed",
        )
        tp = TopicPartition(self.settings.exceptions_topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        self._consumer = consumer
        return consumer


def _apply(exceptions: Exceptions, key: bytes | None, value: bytes | None) -> None:
    if key is None:
        return
    if value is None:  # a tombstone: deleted
        exceptions.remove(key.decode())
        return
    try:
        exceptions.put(DetectionException.model_validate_json(value))
    except ValueError:
        log.error(
            "unreadable exception on the topic; ignored", extra={"exception.id": key.decode()}
        )


def _log_change(
    client: Elasticsearch,
    settings: Settings,
    change: str,
    exception: DetectionException,
    by: str,
    why: str,
) -> None:
    client.index(
        index=settings.exception_log_index,
        document={
            "@timestamp": datetime.now(UTC).isoformat(),
            "change": change,
            "by": by,
            "why": why,
            "exception": exception.model_dump(mode="json"),
        },
        refresh="wait_for",
    )


def history(client: Elasticsearch, settings: Settings) -> list[dict[str, Any]]:
    """Every recorded change, oldest first."""
    return list(search_all(client, settings.exception_log_index, {"match_all": {}}))


def _readable(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'exception'}: {e['msg']}" for e in errors()
        )
    return str(exc)

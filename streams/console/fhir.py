"""``POST /fhir/AuditEvent`` and ``POST /fhir``: a FHIR server sends its audit trail here.

It answers as a FHIR server does, so a server's audit sender (HAPI FHIR's BALP interceptor, an
IHE BALP "Audit Record Repository" client) needs no adaptation: 201 with a ``Location`` for an
AuditEvent, a ``batch-response`` / ``transaction-response`` Bundle for a Bundle, and an
``OperationOutcome`` naming the element (FHIRPath in ``expression``) for what cannot be taken.

Nothing is acknowledged before Kafka has it: the resource goes to the FHIR topic with
``acks=all`` and the answer waits for the broker; if Kafka cannot take it the answer is 503,
and the sender retries. The worker maps what it reads from that topic (``streams.foreign``);
the same pure mapping runs here first only so that a record that could never be mapped is
refused now, to its sender, rather than accepted and dead-lettered later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from adapters import fhir
from adapters.common import MAX_RECORD_BYTES, Refusal, Translation
from adapters.table import MappingPolicy
from streams import metrics
from streams.console.tokens import Role
from streams.decode import Rejected, decode
from streams.settings import Settings

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
ACCEPTED_TYPES = (FHIR_JSON, "application/json", "application/json+fhir")
CAPABILITIES = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "date": "2026-11-25",
    "kind": "instance",
    "software": {"name": "Guetteur"},
    "implementation": {"description": "Guetteur: an audit record repository (IHE BALP)"},
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [
        {
            "mode": "server",
            "security": {"description": "Authorization: Bearer <token of role producer>"},
            "resource": [{"type": "AuditEvent", "interaction": [{"code": "create"}]}],
            "interaction": [{"code": "batch"}, {"code": "transaction"}],
        }
    ],
}


class FhirReceiver:
    """Senders need a token of role ``producer`` (or ``admin``), as the console API does:
    ``guetteur token create fhir-server --role producer``."""

    def __init__(
        self,
        settings: Settings,
        table: MappingPolicy,
        require: Callable[[web.Request, Role], object],
    ):
        self.settings = settings
        self.table = table
        self.require = require
        self.bounds = settings.event_time_bounds()
        self._producer: AIOKafkaProducer | None = None

    def install(self, app: web.Application) -> None:
        app.router.add_get("/fhir/metadata", self.metadata)
        app.router.add_post("/fhir/AuditEvent", self.audit_event)
        app.router.add_post("/fhir", self.bundle)
        app.router.add_post("/fhir/", self.bundle)
        app.on_cleanup.append(self._close)

    # -- requests --------------------------------------------------------------------------

    async def metadata(self, request: web.Request) -> web.Response:
        """What a FHIR client asks first (HAPI's does, by default): a server that accepts
        AuditEvents, nothing else. Public, as FHIR servers make it: it holds no data."""
        return _fhir(CAPABILITIES, 200)

    async def audit_event(self, request: web.Request) -> web.StreamResponse:
        self.require(request, Role.PRODUCER)
        raw = await _body(request)
        resource = _json_object(raw)
        if resource.get("resourceType") != "AuditEvent":
            kind = resource.get("resourceType")
            return _refused(400, "resourceType", f"{kind!r} posted to /fhir/AuditEvent")
        translation = await asyncio.to_thread(self._translate, raw)
        if translation.refusals:
            return _refused_all(translation)
        await self._publish([(raw, translation)])
        logical_id = _logical_id(translation)
        location = f"{request.url.origin()}/fhir/AuditEvent/{logical_id}"
        events = len(translation.events)
        metrics.FHIR_POSTS.labels("201").inc()
        if request.headers.get("Prefer", "").replace(" ", "") == "return=minimal":
            return web.Response(status=201, headers={"Location": location})
        outcome = _outcome("information", None, f"accepted: {events} access event(s)")
        return _fhir(outcome, 201, headers={"Location": location})

    async def bundle(self, request: web.Request) -> web.StreamResponse:
        """A transaction is all or nothing (published as one message, which the worker maps
        as one); a batch's entries are each taken or refused on their own."""
        self.require(request, Role.PRODUCER)
        raw = await _body(request)
        bundle = _json_object(raw)
        kind = bundle.get("type")
        if bundle.get("resourceType") != "Bundle" or kind not in ("batch", "transaction"):
            problem = "POST [base] takes a Bundle of type batch or transaction"
            return _refused(400, "Bundle.type", problem)
        entries = bundle.get("entry", [])
        if not isinstance(entries, list):
            return _refused(400, "Bundle.entry", "not a list of entries")
        # Validation is CPU work (~0.3 ms an entry): off the loop, which serves other senders.
        mapped = await asyncio.to_thread(lambda: [self._entry(entry) for entry in entries])
        refused = [(n, t.refusals[0]) for n, (_, t) in enumerate(mapped) if t.refusals]
        if kind == "transaction":
            if refused:
                n, refusal = refused[0]
                element = _in_entry(n, refusal.element)
                return _refused(400, element, f"{refusal.problem} (the transaction is refused)")
            await self._publish(
                [(raw, Translation(events=[e for _, t in mapped for e in t.events]))]
            )
        else:
            await self._publish([(one, t) for one, t in mapped if not t.refusals])
        answers = [_answer(translation) for _, translation in mapped]
        metrics.FHIR_POSTS.labels("200").inc()
        return _fhir(_response_bundle(f"{kind}-response", answers), 200)

    def _entry(self, entry: Any) -> tuple[bytes, Translation]:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        one = json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode()
        return one, self._translate(one)

    def _translate(self, raw: bytes) -> Translation:
        """The mapping, then the contract's own checks (the ingest path's): a year-1 date maps,
        but the events topic would refuse it; the sender hears it now, not a dead letter."""
        translation = fhir.translate(raw, self.table)
        now = datetime.now(UTC)
        for event in translation.events:
            verdict = decode(json.dumps(event).encode(), bounds=self.bounds, now=now)
            if isinstance(verdict, Rejected):
                refusal = Refusal("AuditEvent", f"{verdict.reason.value}: {verdict.detail}", raw)
                return Translation(refusals=[refusal], records=translation.records)
        return translation

    # -- Kafka -----------------------------------------------------------------------------

    async def _publish(self, records: list[tuple[bytes, Translation]]) -> None:
        """Every record acknowledged by the broker (acks=all), or 503 for the sender to retry."""
        if not records:
            return
        try:
            producer = await self._started()
            sent = [
                await producer.send(self.settings.fhir_topic, value=raw, key=_key(translation))
                for raw, translation in records
            ]
            for delivery in sent:
                await delivery
        except KafkaError as exc:
            log.warning("FHIR audit records not published", extra={"error": repr(exc)})
            metrics.FHIR_POSTS.labels("503").inc()
            raise web.HTTPServiceUnavailable(
                text=json.dumps(_outcome("transient", None, "Kafka is unavailable: retry")),
                content_type=FHIR_JSON,
                headers={"Retry-After": "5"},
            ) from None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_servers(),
                acks="all",
                enable_idempotence=True,
                max_request_size=MAX_RECORD_BYTES + 65_536,
                request_timeout_ms=15_000,
                client_id="guetteur-fhir-receiver",
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # its connections and tasks, before the next attempt
                raise
            self._producer = producer
        return self._producer

    async def _close(self, app: web.Application) -> None:
        if self._producer is not None:
            await self._producer.stop()


async def _body(request: web.Request) -> bytes:
    content_type = request.content_type
    if content_type not in ACCEPTED_TYPES:
        metrics.FHIR_POSTS.labels("415").inc()
        problem = f"Content-Type {content_type!r}: send {FHIR_JSON}"
        raise _error(web.HTTPUnsupportedMediaType, None, problem)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.FHIR_POSTS.labels("413").inc()
        problem = f"over the size limit ({MAX_RECORD_BYTES} bytes): send smaller Bundles"
        body = json.dumps(_outcome("error", None, problem))
        too_large = web.HTTPRequestEntityTooLarge
        raise too_large(MAX_RECORD_BYTES, text=body, content_type=FHIR_JSON) from None


def _in_entry(n: int, element: str) -> str:
    """An entry's element as a path in its Bundle (``AuditEvent.agent`` of entry 2 is
    ``Bundle.entry[2].resource.agent``)."""
    where = f"Bundle.entry[{n}].resource"
    if element.startswith("AuditEvent"):
        return where + element.removeprefix("AuditEvent")
    return where if element == "message" else f"{where}.{element}"


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        metrics.FHIR_POSTS.labels("400").inc()
        raise _error(web.HTTPBadRequest, None, "the body is not JSON") from None
    if not isinstance(document, dict):
        metrics.FHIR_POSTS.labels("400").inc()
        raise _error(web.HTTPBadRequest, None, "the body is not a FHIR resource")
    return document


def _refused_all(translation: Translation) -> web.Response:
    refusal = translation.refusals[0]
    return _refused(400, refusal.element, refusal.problem)


def _refused(status: int, element: str | None, problem: str) -> web.Response:
    metrics.FHIR_POSTS.labels(str(status)).inc()
    return _fhir(_outcome("error", element, problem), status)


def _error(kind: type[web.HTTPException], element: str | None, problem: str) -> web.HTTPException:
    return kind(text=json.dumps(_outcome("error", element, problem)), content_type=FHIR_JSON)


def _outcome(severity: str, element: str | None, problem: str) -> dict[str, Any]:
    code = {"information": "informational", "transient": "transient"}.get(severity, "invalid")
    issue: dict[str, Any] = {
        "severity": "error" if severity == "transient" else severity,
        "code": code,
        "diagnostics": problem,
    }
    if element:
        issue["expression"] = [element]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _logical_id(translation: Translation) -> str:
    """The AuditEvent's id here: its own, or the content hash its events are named by."""
    event_id = str(translation.events[0]["event_id"])
    return event_id.removeprefix("fhir:").split("#", 1)[0]


def _answer(translation: Translation) -> dict[str, Any]:
    """One entry of a batch-response or transaction-response Bundle."""
    if translation.refusals:
        refusal = translation.refusals[0]
        outcome = _outcome("error", refusal.element, refusal.problem)
        return {"response": {"status": "400 Bad Request", "outcome": outcome}}
    location = f"AuditEvent/{_logical_id(translation)}"
    return {"response": {"status": "201 Created", "location": location}}


def _response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _key(translation: Translation) -> bytes | None:
    practice = translation.events[0].get("practice_id") if translation.events else None
    return practice.encode() if isinstance(practice, str) else None


def _fhir(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body), status=status, content_type=FHIR_JSON, headers=headers
    )

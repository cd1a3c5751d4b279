"""FHIR ``AuditEvent`` (R4 and R5, IHE BALP profiles) -> access events.

A message is one AuditEvent or a Bundle of them, as a FHIR server writes or posts them. Each
AuditEvent is validated by ``fhir.resources`` (the HL7 models, in pydantic) against the FHIR
version its shape says it is, then mapped element by element (``docs/fhir-atna.md`` has the
table; ``adapters.auditevent`` reads the elements of either version). One AuditEvent naming
several patients is several accesses, with ids derived from its own. What cannot be mapped is
refused with the FHIR path of the element, never guessed.

A Bundle's entries are independent, as in a ``batch``: the good ones map, each bad one is
refused alone (its own resource kept for a replay); a ``transaction`` is all or nothing.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from adapters.auditevent import R4View, R5View
from adapters.common import (
    MAX_EVENT_ID,
    Refusal,
    Translation,
    UnmappableError,
    content_id,
    decode_text,
    event_ids,
    shown,
    without_none,
)
from adapters.table import MappingPolicy

# R5 renamed or added these; an R4 AuditEvent has none of them.
_R5_ONLY = {"category", "code", "occurredDateTime", "occurredPeriod", "patient", "severity"}
_R5_ONLY |= {"authorization", "basedOn", "encounter"}


def translate(raw: bytes, table: MappingPolicy) -> Translation:
    """One Kafka message or HTTP body: an AuditEvent, or a Bundle of AuditEvents."""
    try:
        document = _parse(raw)
    except UnmappableError as exc:
        return Translation(refusals=[Refusal(exc.element, exc.problem, raw)], records=1)
    if document.get("resourceType") == "Bundle":
        return _bundle(document, raw, table)
    return _entry(document, raw, "AuditEvent", table)


def _parse(raw: bytes) -> dict[str, Any]:
    text = decode_text(raw, "message")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: also 5,000-digit numbers
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise UnmappableError("message", f"not valid JSON ({problem})") from None
    if not isinstance(document, dict):
        raise UnmappableError("message", f"a JSON {type(document).__name__}, not a FHIR resource")
    kind = document.get("resourceType")
    if kind not in ("AuditEvent", "Bundle"):
        raise UnmappableError("resourceType", f"{shown(kind)} is neither AuditEvent nor Bundle")
    return document


def _entry(resource: Any, original: bytes, path: str, table: MappingPolicy) -> Translation:
    try:
        events = map_audit_event(resource, table, path)
    except UnmappableError as exc:
        return Translation(refusals=[Refusal(exc.element, exc.problem, original)], records=1)
    except RecursionError:
        return Translation(refusals=[Refusal(path, "nested too deeply", original)], records=1)
    return Translation(events=events, records=1, mapped=1)


def _bundle(bundle: dict[str, Any], raw: bytes, table: MappingPolicy) -> Translation:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        refusal = Refusal("Bundle.entry", "not a list of entries", raw)
        return Translation(refusals=[refusal], records=1)
    result = Translation()
    for n, entry in enumerate(entries):
        path = f"Bundle.entry[{n}].resource"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        original = _canonical(resource if resource is not None else entry)
        if not isinstance(resource, dict) or resource.get("resourceType") != "AuditEvent":
            kind = resource.get("resourceType") if isinstance(resource, dict) else resource
            refusal = Refusal(path, f"{shown(kind)} is not an AuditEvent", original)
            result.extend(Translation(refusals=[refusal], records=1))
            continue
        result.extend(_entry(resource, original, path, table))
    if bundle.get("type") == "transaction" and result.refusals:
        whole = result.refusals[0]
        problem = f"{whole.problem} (a transaction is all or nothing: none of its entries kept)"
        refused = Refusal(whole.element, problem, raw)
        return Translation(refusals=[refused], records=result.records)  # mapped: none
    return result


def map_audit_event(resource: dict[str, Any], table: MappingPolicy, path: str) -> list[Any]:
    """The access events one AuditEvent describes (contract JSON), or ``UnmappableError``."""
    r5 = bool(_R5_ONLY & resource.keys()) or isinstance(resource.get("outcome"), dict)
    event = _validated(resource, r5, path)
    view = R5View(event, path) if r5 else R4View(event, path)
    patients = view.patients()
    placed = table.site(view.site_names(), table.fhir_source)
    base = _base_id(event.id, view.site_names(), resource)
    common = {
        "timestamp": view.timestamp(),
        "source": placed.source,
        "practice_id": placed.practice_id,
        "action": view.action(table),
        "outcome": view.outcome(),
        "actor": view.actor(table, placed.person_role),
        "data_category": view.category(table),
        "purpose": table.lookup(table.purposes, view.purpose_codes(table)),
        "attributes": {"fhir": view.attributes(event, table, r5)},
    }
    ids = event_ids(base, len(patients))
    each: list[str | None] = [*patients] or [None]
    return [
        without_none({**common, "event_id": event_id, "patient_id": patient})
        for event_id, patient in zip(ids, each, strict=True)
    ]


def _validated(resource: dict[str, Any], r5: bool, path: str) -> Any:
    from fhir.resources.auditevent import AuditEvent as R5AuditEvent
    from fhir.resources.R4B.auditevent import AuditEvent as R4AuditEvent

    model: Any = R5AuditEvent if r5 else R4AuditEvent
    try:
        return model.model_validate(resource)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = _fhir_path(path, error["loc"])
        raise UnmappableError(
            where, f"invalid FHIR {'R5' if r5 else 'R4'}: {error['msg']}"
        ) from None
    except (ValueError, TypeError) as exc:
        raise UnmappableError(path, f"invalid FHIR: {str(exc)[:200]}") from None


def _fhir_path(path: str, loc: tuple[int | str, ...]) -> str:
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "root":
            path += f".{part}"
    return path


def _base_id(logical_id: str | None, sites: list[str], resource: dict[str, Any]) -> str:
    """``fhir:<server>/<id>``: an AuditEvent's id is unique on its server only (two servers
    both write AuditEvent/1), so it is named with the first name of its source; without an
    id, by its content."""
    if logical_id and sites and len(sites[0]) + len(logical_id) <= MAX_EVENT_ID - 16:
        return f"fhir:{sites[0]}/{logical_id}"
    return f"fhir:{content_id(_canonical(resource))}"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

"""Contract events rewritten as the records health IT writes, for ``bench.foreign_bench``.

Each access event becomes one FHIR R4 ``AuditEvent`` (its id the event's) or one DICOM
PS3.15 ``AuditMessage``; ``policy_text`` writes the ``[mapping]`` rows that bring them back
(a site per source and practice, the accounts no standard role code names, bench codes for
what no standard code says: ``download``, the purposes support, migration and other).
``mapped`` and ``lost_fields`` check the round trip before any worker runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from adapters.common import Translation
from adapters.table import DEFAULT_CATEGORIES, DEFAULT_PURPOSES, DEFAULT_ROLES, MappingPolicy
from detectors.models import DataCategory, Purpose, Role
from streams.demo.simulate import DEMO_POLICY

Event = dict[str, Any]

BENCH_SYSTEM = "urn:guetteur:bench"  # codes no standard system has (see the module docstring)
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
SNOMED = "http://snomed.info/sct"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
FHIR_ID = re.compile(r"^[A-Za-z0-9.-]{1,64}$")

Code = tuple[str, str]  # (system, code)

# Contract action -> FHIR (type, subtype or None, R4 CRUDE action) and ATNA (EventID, action).
FHIR_ACTIONS: dict[str, tuple[Code, str | None, str]] = {
    "view": ((EVENT_TYPE, "rest"), "read", "R"),
    "search": ((EVENT_TYPE, "rest"), "search-type", "E"),
    "create": ((EVENT_TYPE, "rest"), "create", "C"),
    "update": ((EVENT_TYPE, "rest"), "update", "U"),
    "delete": ((EVENT_TYPE, "rest"), "delete", "D"),
    "export": ((DCM, "110106"), None, "R"),
    "download": ((BENCH_SYSTEM, "download"), None, "R"),
    "login": ((DCM, "110122"), None, "E"),
    "logout": ((DCM, "110123"), None, "E"),
}
ATNA_ACTIONS: dict[str, tuple[Code, str]] = {
    "view": (("DCM", "110110"), "R"),  # Patient Record, read
    "search": (("DCM", "110112"), "E"),  # Query
    "create": (("DCM", "110110"), "C"),
    "update": (("DCM", "110110"), "U"),
    "delete": (("DCM", "110110"), "D"),
    "export": (("DCM", "110106"), "R"),  # Export
    "download": ((BENCH_SYSTEM, "download"), "R"),
    "login": (("DCM", "110122"), "E"),
    "logout": (("DCM", "110123"), "E"),
}
OUTCOMES = {"success": "0", "failure": "4"}  # "denied" has no code of its own: left out
# Roles a standard code says (adapters.table.DEFAULT_ROLES); the others go in actor_roles.
ROLE_CODES: dict[str, Code] = {
    Role.PRACTITIONER: (ROLE_CLASS, "PROV"),
    Role.SECRETARY: (SNOMED, "394572006"),
    Role.SERVICE: (DCM, "110150"),
    Role.PATIENT: (ROLE_CLASS, "PAT"),
}
# A resource type (FHIR) or participant object id type (ATNA) per data category.
CATEGORY_TYPES: dict[str, str] = {
    DataCategory.IDENTITY: "Patient",
    DataCategory.ADMINISTRATIVE: "EpisodeOfCare",
    DataCategory.APPOINTMENT: "Appointment",
    DataCategory.MEDICAL: "Observation",
    DataCategory.PRESCRIPTION: "MedicationRequest",
    DataCategory.REIMBURSEMENT: "ExplanationOfBenefit",
    DataCategory.BILLING: "Invoice",
    DataCategory.DOCUMENT: "DocumentReference",
}
STANDARD_PURPOSES: dict[str, str] = {
    Purpose.CARE: "TREAT",
    Purpose.BILLING: "HPAYMT",
    Purpose.RESEARCH: "HRESCH",
}
# What the round trip must keep; the rest of an event is what the record cannot carry.
KEPT = (
    *("timestamp", "source", "practice_id", "action", "outcome", "patient_id"),
    *("data_category", "purpose"),
)
KEPT_ACTOR = ("id", "role", "ip")

assert all(DEFAULT_ROLES[code] == role for role, (_, code) in ROLE_CODES.items())
assert all(DEFAULT_CATEGORIES[kind] == c for c, kind in CATEGORY_TYPES.items())
assert all(DEFAULT_PURPOSES[code] == p for p, code in STANDARD_PURPOSES.items())


def expressible(event: Event) -> bool:
    """Whether an audit record can say what the event says (its action and outcome)."""
    return event["action"] in FHIR_ACTIONS and event.get("outcome", "success") in OUTCOMES


def site(event: Event) -> str:
    """The audit source of an event: one per (source, practice), listed in mapping.sites."""
    practice = event.get("practice_id")
    return f"{event['source']}@{practice}" if practice else str(event["source"])


def fhir_id(event_id: str) -> str:
    """A FHIR id (64 characters of ``[A-Za-z0-9.-]``) that names the event: its own if it is one."""
    if FHIR_ID.match(event_id):
        return event_id
    return "h-" + hashlib.sha256(event_id.encode()).hexdigest()[:40]


def _coding(code: Code) -> dict[str, str]:
    return {"system": code[0], "code": code[1]}


def _purpose(purpose: str) -> Code:
    standard = STANDARD_PURPOSES.get(purpose)
    return (ACT_REASON, standard) if standard else (BENCH_SYSTEM, purpose)


def to_fhir(event: Event) -> dict[str, Any]:
    """The event as one FHIR R4 AuditEvent (IHE BALP-like), which maps back to it."""
    kind, subtype, crude = FHIR_ACTIONS[event["action"]]
    actor = event["actor"]
    agent: dict[str, Any] = {"who": {"identifier": {"value": actor["id"]}}, "requestor": True}
    if actor["role"] in ROLE_CODES:
        agent["type"] = {"coding": [_coding(ROLE_CODES[actor["role"]])]}
    if "ip" in actor:
        agent["network"] = {"address": actor["ip"], "type": "2"}
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": fhir_id(event["event_id"]),
        "type": _coding(kind),
        "action": crude,
        "recorded": event["timestamp"],
        "outcome": OUTCOMES[event.get("outcome", "success")],
        "agent": [agent],
        "source": {"observer": {"identifier": {"value": site(event)}}},
    }
    if subtype:
        resource["subtype"] = [_coding((INTERACTION, subtype))]
    if "purpose" in event:
        resource["purposeOfEvent"] = [{"coding": [_coding(_purpose(event["purpose"]))]}]
    entities = []
    if "patient_id" in event:
        patient = event["patient_id"]
        what = (
            {"reference": f"Patient/{patient}"}
            if FHIR_ID.match(patient)
            else {"identifier": {"value": patient}}
        )
        entities.append(
            {
                "what": what,
                "type": _coding((ENTITY_TYPE, "1")),  # Person
                "role": _coding((OBJECT_ROLE, "1")),  # Patient
            }
        )
    if "data_category" in event:
        data_type = CATEGORY_TYPES[event["data_category"]]
        entities.append(
            {
                "what": {"reference": f"{data_type}/{resource['id']}"},
                "type": _coding((ENTITY_TYPE, "2")),  # System Object
                "role": _coding((OBJECT_ROLE, "4")),  # Domain Resource
            }
        )
    if entities:
        resource["entity"] = entities
    return resource


def to_atna(event: Event) -> bytes:
    """The event as one DICOM PS3.15 AuditMessage, which maps back to it."""
    (system, code), crude = ATNA_ACTIONS[event["action"]]
    root = Element("AuditMessage")
    identification = SubElement(
        root,
        "EventIdentification",
        EventActionCode=crude,
        EventDateTime=event["timestamp"],
        EventOutcomeIndicator=OUTCOMES[event.get("outcome", "success")],
    )
    SubElement(identification, "EventID", {"csd-code": code, "codeSystemName": system})
    if "purpose" in event:
        system, code = _purpose(event["purpose"])
        SubElement(identification, "PurposeOfUse", {"csd-code": code, "codeSystemName": system})
    actor = event["actor"]
    participant = SubElement(
        root,
        "ActiveParticipant",
        UserID=actor["id"],
        UserIsRequestor="true",
        UserTypeCode="2" if actor["role"] == Role.SERVICE else "1",
    )
    if "ip" in actor:
        participant.set("NetworkAccessPointTypeCode", "2")
        participant.set("NetworkAccessPointID", actor["ip"])
    if actor["role"] in ROLE_CODES:
        system, code = ROLE_CODES[actor["role"]]
        SubElement(participant, "RoleIDCode", {"csd-code": code, "codeSystemName": system})
    SubElement(root, "AuditSourceIdentification", AuditSourceID=site(event))
    if "patient_id" in event:
        patient = SubElement(
            root,
            "ParticipantObjectIdentification",
            ParticipantObjectID=event["patient_id"],
            ParticipantObjectTypeCode="1",  # Person
            ParticipantObjectTypeCodeRole="1",  # Patient
        )
        SubElement(
            patient,
            "ParticipantObjectIDTypeCode",
            {"csd-code": "2", "codeSystemName": "RFC-3881"},  # Patient Number
        )
    # The data touched, named by the event id: ATNA event ids are the message's digest, so two
    # events alike in all else stay two accesses.
    data = SubElement(
        root,
        "ParticipantObjectIdentification",
        ParticipantObjectID=event["event_id"],
        ParticipantObjectTypeCode="2",  # System Object
        ParticipantObjectTypeCodeRole="4",  # Domain Resource
    )
    if "data_category" in event:
        data_type = CATEGORY_TYPES[event["data_category"]]
        SubElement(
            data,
            "ParticipantObjectIDTypeCode",
            {"csd-code": data_type, "codeSystemName": "HL7 FHIR resource type"},
        )
    return b'<?xml version="1.0" encoding="UTF-8"?>' + tostring(root, encoding="unicode").encode()


def _toml_key(key: str) -> str:
    return json.dumps(key)  # a JSON string is a TOML basic string


def policy_text(events: list[Event]) -> str:
    """The demo policy plus the ``[mapping]`` rows these events need to round-trip."""
    lines = [DEMO_POLICY.read_text(), "", "# Written by bench.foreign_bench.", "[mapping.actions]"]
    lines.append(f'{_toml_key(f"{BENCH_SYSTEM}|download")} = "download"')
    lines.append("[mapping.purposes]")
    for purpose in Purpose:
        if purpose not in STANDARD_PURPOSES:
            lines.append(f"{_toml_key(f'{BENCH_SYSTEM}|{purpose}')} = {_toml_key(purpose)}")
    lines.append("[mapping.actor_roles]")
    actors = {e["actor"]["id"]: e["actor"]["role"] for e in events}
    for actor, role in sorted(actors.items()):
        if role not in ROLE_CODES:
            lines.append(f"{_toml_key(actor)} = {_toml_key(role)}")
    sites = {site(e): (e["source"], e.get("practice_id")) for e in events}
    for name, (source, practice) in sorted(sites.items()):
        lines += [f"[mapping.sites.{_toml_key(name)}]", f"source = {_toml_key(source)}"]
        if practice:
            lines.append(f"practice_id = {_toml_key(practice)}")
    return "\n".join(lines) + "\n"


def mapped(
    payloads: list[bytes],
    translate: Callable[[bytes, MappingPolicy], Translation],
    table: MappingPolicy,
) -> list[Event]:
    """The events the worker's mapping makes of the records, as it will (each must map)."""
    events: list[Event] = []
    for payload in payloads:
        translation = translate(payload, table)
        if translation.refusals or len(translation.events) != 1:
            reasons = [refusal.reason for refusal in translation.refusals]
            raise SystemExit(f"the bench's converter is wrong: {reasons}\n{payload[:2000]!r}")
        events += translation.events
    return events


def carried(event: Event) -> Event:
    """The event without what an audit record cannot carry: what every run is given."""
    kept = {key: event[key] for key in ("event_id", *KEPT) if key in event}
    actor = {key: event["actor"][key] for key in KEPT_ACTOR if key in event["actor"]}
    return {**kept, "actor": actor}


def lost_fields(originals: list[Event], events: list[Event]) -> Counter[str]:
    """Asserts the round trip keeps what a record can say; counts what it could not carry."""
    lost: Counter[str] = Counter()
    for original, event in zip(originals, events, strict=True):
        for key in KEPT:
            a, b = original.get(key), event.get(key)
            if key == "timestamp":
                a, b = datetime.fromisoformat(str(a)), datetime.fromisoformat(str(b))
            if key == "outcome":
                a = a or "success"
            assert a == b, f"{key}: {a!r} became {b!r} ({original['event_id']})"
        for key in KEPT_ACTOR:
            a, b = original["actor"].get(key), event["actor"].get(key)
            assert a == b, f"actor.{key}: {a!r} became {b!r} ({original['event_id']})"
        lost.update(key for key in original if key not in (*KEPT, "actor", "event_id"))
        lost.update(f"actor.{key}" for key in original["actor"] if key not in KEPT_ACTOR)
    return lost

"""The whole worker fed FHIR AuditEvents (and IHE ATNA messages) against native contract JSON.

    python -m bench.foreign_bench [--events N] [--no-atna] [--as-simulated] [--keep-logs DIR]

The same logical access events (``streams.demo`` traffic, as ``bench.worker_bench`` makes it)
reach a fresh ``guetteur worker`` in turn, each run on its own topics and indices:

- ``native``: contract JSON on the events topic, as producers send it;
- ``fhir``: each event rewritten as one FHIR R4 ``AuditEvent`` on ``<events>-fhir``;
- ``atna``: each event rewritten as one DICOM PS3.15 ``AuditMessage`` on ``<events>-atna``.

Each run is timed from the worker's "Ready" (start-up done, nothing read yet) until the history
holds every event and detection has run every route it wants (``worker_bench`` times from the
first indexed batch, printed too, which a foreign run reaches only after mapping a few batches
ahead); then until the alerts index holds every incident the offline runner finds over the
events the run's worker ingests.

Same logical events: actions no audit record has a shape for (sessions, consents, screenshots)
are left out of every run, and so is what the records cannot carry (an actor's country, a
session id, a record count...): otherwise detection would have other work in the native run
(its support sessions, their consent left out, would alert). ``--as-simulated`` gives the
native run its events whole all the same.

The policy file the bench writes is the demo's plus a ``[mapping]`` section: a site per
(source, practice) so both round-trip, the accounts whose role no standard code says, and bench
codes for what no standard code says (``download``; the purposes support, migration, other).
Before any worker starts, every record is mapped here as the worker will map it, and must give
back its event.

Absolute events/s drift on a shared machine; the ratios, measured in the same run, are the
figures to compare between commits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from adapters import atna, fhir
from adapters.common import Translation
from adapters.table import DEFAULT_CATEGORIES, DEFAULT_PURPOSES, DEFAULT_ROLES, MappingPolicy
from bench.worker_bench import (
    CHECKPOINT_KEY,
    PSEUDONYM_KEY,
    WorkerRun,
    _first_batch,
    documents,
    expected,
    run_worker,
)
from detectors.models import DataCategory, Purpose, Role
from detectors.policy import load_policy
from streams.decode import decode
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.elastic import sync_client
from streams.producer import Record, publish_records
from streams.settings import Settings, StackSettings
from streams.stack import LocalStack
from streams.topics import ensure_topics

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


def bench_events(count: int, days: int) -> tuple[list[Event], Counter[str]]:
    """The first ``count`` expressible simulated events, and the actions left out."""
    first = date.today() - timedelta(days=days + 1)  # the worker refuses future events
    practices = max(1, math.ceil(count / (days * 115)))
    while True:
        events = simulate(practices=practices, days=days, start=first, seed=3).events
        kept = [e for e in events if expressible(e)]
        if len(kept) >= count:
            break
        practices += max(1, math.ceil((count - len(kept)) / (days * 115)))
    kept = kept[:count]
    last = kept[-1]["timestamp"], kept[-1]["event_id"]
    within = [e for e in events if (e["timestamp"], e["event_id"]) <= last]
    return kept, Counter(e["action"] for e in within if not expressible(e))


def per_record_us(function: Callable[[bytes], object], payloads: list[bytes]) -> float:
    """Microseconds per call, the best of three passes (after a warm-up)."""
    for payload in payloads[:50]:
        function(payload)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for payload in payloads:
            function(payload)
        best = min(best, time.perf_counter() - start)
    return best / len(payloads) * 1e6


@dataclass(frozen=True)
class FormatRun:
    worker: WorkerRun
    seconds: float  # from the worker's "Ready" until history and detection had every event
    documents: int  # in the history at the end
    incidents: int  # the worker had to complete

    @property
    def throughput(self) -> float:
        return self.documents / self.seconds


def _ready(log: Path) -> float:
    """When Faust said the worker was ready, before it read any event."""
    for line in log.read_text().splitlines():
        if line.startswith("{") and 'Worker]: Ready"' in line:
            return datetime.fromisoformat(json.loads(line)["@timestamp"]).timestamp()
    raise SystemExit(f"the worker never said it was ready:\n{log.read_text()[-2000:]}")


def run_format(
    name: str,
    run_id: str,
    policy: Path,
    records: list[Record],
    topic: Callable[[Settings], str],
    events: list[Event],
    workdir: Path,
) -> FormatRun:
    """One worker from a fresh app id, topics and indices, on ``records`` published to its
    ``topic``, which must give ``events``."""
    workdir.mkdir()
    env = {
        **os.environ,
        "GUETTEUR_APP_ID": f"bench-{run_id}-{name}",
        "GUETTEUR_TOPIC_EVENTS": f"bench-{run_id}-{name}-events",
        "GUETTEUR_TOPIC_DLQ": f"bench-{run_id}-{name}-dlq",
        "GUETTEUR_TOPIC_ALERTS": f"bench-{run_id}-{name}-alerts",
        "GUETTEUR_INDEX_PREFIX": f"bench-{run_id}-{name}",
        "GUETTEUR_DATA_DIR": str(workdir / "worker"),
        "GUETTEUR_WEB_PORT": "6099",
        "GUETTEUR_PSEUDONYM_KEY_ID": "bench",
        "GUETTEUR_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "GUETTEUR_CHECKPOINT_KEY": CHECKPOINT_KEY,
        "GUETTEUR_POLICY_FILE": str(policy),
        "GUETTEUR_PAGE_SEVERITIES": "off",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("GUETTEUR_")})
    settings = Settings()
    ensure_topics(settings)
    publish_records(settings, topic(settings), records)
    # The bench policy is the demo's plus [mapping], which detection does not read.
    incidents, routes = expected(events)
    print(f"{name}: {len(records)} messages on {topic(settings)}", flush=True)
    run = run_worker(env, settings, len(events), routes, incidents, workdir)
    # run_worker times from the first indexed batch, which a foreign run reaches only once its
    # translate agent has mapped a few batches ahead: from "Ready", every run is timed alike.
    log = workdir / "worker.log"
    first = _first_batch(log)
    assert first is not None
    done = first + len(events) / run.throughput
    client = sync_client(settings)
    client.indices.refresh(index=settings.history_index)
    indexed = documents(client, settings.history_index)
    return FormatRun(run, done - _ready(log), indexed, len(incidents))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--no-atna", action="store_true", help="skip the ATNA run")
    parser.add_argument(
        "--as-simulated",
        action="store_true",
        help="give the native run the events whole, with what the records cannot carry "
        "(its detection then has other work: consent-less sessions alert, for one)",
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the workers' logs to this folder")
    args = parser.parse_args()
    LocalStack(StackSettings()).up(progress=lambda message: None)
    simulated, skipped = bench_events(args.events, args.days)
    events = simulated if args.as_simulated else [carried(e) for e in simulated]
    native = [json.dumps(e).encode() for e in events]
    resources = [json.dumps(to_fhir(e)).encode() for e in events]
    messages = [to_atna(e) for e in events]
    keys = [str(e["practice_id"]).encode() if "practice_id" in e else None for e in events]
    run_id = uuid.uuid4().hex[:8]
    runs: dict[str, FormatRun] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        policy = workdir / "policy.toml"
        policy.write_text(policy_text(events))
        table = load_policy(policy).mapping
        from_fhir = mapped(resources, fhir.translate, table)
        from_atna = mapped(messages, atna.translate, table)
        lost = lost_fields(simulated, from_fhir)
        assert lost == lost_fields(simulated, from_atna)
        left_out = ", ".join(f"{n} {action}" for action, n in sorted(skipped.items()))
        print(
            f"{len(events)} events, the same in every run (left out of all: {left_out}; "
            "no audit record shape)"
        )
        print(
            ("native run given them whole; " if args.as_simulated else "every run without ")
            + "what FHIR and ATNA records cannot carry: "
            + ", ".join(f"{key} in {n}" for key, n in lost.most_common())
        )
        print(
            "bytes per event: "
            f"native {sum(map(len, native)) / len(native):,.0f}, "
            f"FHIR {sum(map(len, resources)) / len(resources):,.0f}, "
            f"ATNA {sum(map(len, messages)) / len(messages):,.0f}"
        )
        sample = slice(0, min(len(events), 2000))
        profile = [
            ("native: json.loads", per_record_us(json.loads, native[sample])),
            ("native: streams.decode.decode", per_record_us(decode, native[sample])),
            ("FHIR: json.loads", per_record_us(json.loads, resources[sample])),
            (
                "FHIR: adapters.fhir.translate",
                per_record_us(lambda raw: fhir.translate(raw, table), resources[sample]),
            ),
            (
                "ATNA: adapters.atna.translate",
                per_record_us(lambda raw: atna.translate(raw, table), messages[sample]),
            ),
        ]
        plans: list[tuple[str, list[bytes], Callable[[Settings], str], list[Event]]] = [
            ("native", native, lambda s: s.topic_events, events),
            ("fhir", resources, lambda s: s.fhir_topic, from_fhir),
        ]
        if not args.no_atna:
            plans.append(("atna", messages, lambda s: s.atna_topic, from_atna))
        try:
            for name, payloads, topic, expect in plans:
                records = [Record(p, k) for p, k in zip(payloads, keys, strict=True)]
                runs[name] = run_format(
                    name, run_id, policy, records, topic, expect, workdir / name
                )
        finally:
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for name in runs:
                    shutil.copy(workdir / name / "worker.log", args.keep_logs / f"{name}.log")
    indexed = {name: run.documents for name, run in runs.items()}
    assert set(indexed.values()) == {len(events)}, f"history documents per run: {indexed}"

    print("mapping alone, one core, this process (µs per record):")
    for label, micros in profile:
        print(f"  {label:<32} {micros:8.1f}")
    base = runs["native"].throughput
    header = ["run", "events", "seconds", "events/s", "(from 1st batch)", "incidents"]
    rows: list[tuple[str, ...]] = [(*header, "all complete", "RSS peak")]
    for name, run in runs.items():
        rows.append(
            (
                name,
                f"{run.documents:,}",
                f"{run.seconds:.1f}",
                f"{run.throughput:,.0f}",
                f"{run.worker.throughput:,.0f}",
                f"{run.incidents}",
                f"{run.worker.complete_after:.1f} s",
                f"{run.worker.rss_peak_mib:,.0f} MiB",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    for name, run in runs.items():
        if name != "native":
            print(f"{name} / native: {run.throughput / base:.2f}x")


if __name__ == "__main__":
    main()

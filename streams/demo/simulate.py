"""``guetteur simulate``: realistic days of health-data accesses, with labelled incidents.

Benign traffic follows what the published promises describe: patients book online, secretaries
check them in, practitioners consult (and consult HRi histories before downloading one), a
reminder service reads the agenda, support sessions run with the practitioner's consent, a
nightly billing export goes to the declared partner. Under the demo policy (``policy.toml``
beside this module) none of it raises an alert. Incidents, one per rule family, are injected on
the first day and labelled with the rule that must catch them and their event ids.

Deterministic: the same arguments give the same events, ids and labels.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

PARIS = timezone(timedelta(hours=1))
DEMO_POLICY = Path(__file__).with_name("policy.toml")
SUPPORT_AGENT = {
    "id": "sup-ma-042",
    "role": "support_agent",
    "organization": "support-outsourcing",
    "country": "MA",
}
PATIENT_WEB = {"id": "booking-web", "role": "patient"}
REMINDERS = {"id": "svc-reminders", "role": "service"}
BILLING = {"id": "svc-billing", "role": "service"}

Event = dict[str, Any]


@dataclass(frozen=True)
class Label:
    incident: str
    rule_id: str
    practice_id: str
    event_ids: list[str]
    description: str

    def row(self) -> dict[str, Any]:
        return {
            "incident": self.incident,
            "rule_id": self.rule_id,
            "practice_id": self.practice_id,
            "event_ids": self.event_ids,
            "description": self.description,
        }


@dataclass
class Simulation:
    events: list[Event] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)


class Practice:
    """One practice's staff and patients, and a counter for its event ids."""

    def __init__(self, number: int, rng: random.Random):
        self.id = f"prac-75-{number:04d}"
        self.rng = rng
        self.doctors = [
            {"id": f"dr-{number:02d}-{n}", "role": "practitioner", "country": "FR"} for n in (1, 2)
        ]
        self.secretary = {"id": f"sec-{number:02d}", "role": "secretary", "country": "FR"}
        self.patients = [f"P-{number:02d}{n:04d}" for n in range(1, 61)]
        self._ids = iter(range(1_000_000))

    def event(self, at: datetime, action: str, actor: dict[str, Any], **fields: Any) -> Event:
        return {
            "event_id": f"sim-{self.id}-{at:%m%d}-{next(self._ids):05d}",
            "timestamp": at.isoformat(),
            "source": fields.pop("source", "practice_app"),
            "action": action,
            "actor": actor,
            "practice_id": self.id,
            **fields,
        }


def simulate(
    practices: int = 3,
    days: int = 2,
    start: date = date(2026, 11, 16),
    seed: int = 7,
    incidents: bool = True,
) -> Simulation:
    """``days`` working days at ``practices`` practices; incidents on the first day."""
    rng = random.Random(seed)
    result = Simulation()
    staff = [Practice(n, rng) for n in range(1, practices + 1)]
    for offset in range(days):
        day = start + timedelta(days=offset)
        morning = datetime(day.year, day.month, day.day, 8, 0, tzinfo=PARIS)
        for practice in staff:
            result.events += list(_working_day(practice, morning))
        if incidents and offset == 0:
            for inject in INCIDENTS:
                inject(rng.choice(staff), morning, result)
    result.events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return result


def _working_day(practice: Practice, morning: datetime) -> Iterator[Event]:
    rng, event = practice.rng, practice.event
    at = morning + timedelta(minutes=rng.randint(0, 20))
    for slot in range(14):
        patient = rng.choice(practice.patients)
        doctor = practice.doctors[slot % 2]
        booked = at - timedelta(days=rng.randint(1, 20), minutes=rng.randint(0, 600))
        yield event(
            booked,
            "create",
            PATIENT_WEB,
            source="booking",
            patient_id=patient,
            data_category="appointment",
        )
        yield event(
            at - timedelta(hours=20),
            "view",
            REMINDERS,
            source="booking",
            patient_id=patient,
            data_category="appointment",
        )
        yield event(at, "view", practice.secretary, patient_id=patient, data_category="identity")
        yield event(
            at + timedelta(minutes=1),
            "view",
            practice.secretary,
            patient_id=patient,
            data_category="administrative",
        )
        yield from _consultation(practice, doctor, patient, at + timedelta(minutes=3))
        yield event(
            at + timedelta(minutes=18),
            "create",
            practice.secretary,
            patient_id=patient,
            data_category="billing",
            purpose="billing",
        )
        at += timedelta(minutes=rng.randint(20, 30))
    yield from _support_session(practice, morning + timedelta(hours=rng.randint(2, 6)))
    nightly = morning.replace(hour=20)
    yield event(
        nightly,
        "export",
        BILLING,
        source="export_service",
        data_category="billing",
        record_count=rng.randint(10, 40),
        purpose="billing",
        destination="sftp://billing-partner.example/inbox",
        automated=True,
    )


def _consultation(
    practice: Practice, doctor: dict[str, Any], patient: str, at: datetime
) -> Iterator[Event]:
    rng, event = practice.rng, practice.event
    yield event(at, "view", doctor, patient_id=patient, data_category="medical", purpose="care")
    if rng.random() < 0.3:  # the doctor consults the HRi history, sometimes keeps a copy
        yield event(
            at + timedelta(minutes=2),
            "view",
            doctor,
            source="hri_gateway",
            patient_id=patient,
            data_category="reimbursement",
            purpose="care",
        )
        if rng.random() < 0.5:
            yield event(
                at + timedelta(minutes=3),
                "download",
                doctor,
                source="hri_gateway",
                patient_id=patient,
                data_category="reimbursement",
                purpose="care",
            )
    yield event(
        at + timedelta(minutes=8),
        "create",
        doctor,
        patient_id=patient,
        data_category="medical",
        purpose="care",
    )
    yield event(
        at + timedelta(minutes=10),
        "create",
        doctor,
        patient_id=patient,
        data_category="prescription",
        purpose="care",
    )


def _support_session(
    practice: Practice,
    at: datetime,
    agent: dict[str, Any] = SUPPORT_AGENT,
    consent: bool = True,
    scope: tuple[str, ...] = ("appointment", "administrative"),
    accesses: tuple[tuple[str, str], ...] = (("view", "appointment"), ("search", "administrative")),
    session: str | None = None,
) -> Iterator[Event]:
    event, rng = practice.event, practice.rng
    session = session or f"rs-{practice.id[-4:]}-{at:%m%d%H%M}"
    ticket = f"T-{rng.randint(20000, 29999)}"
    common = {"source": "remote_support", "session_id": session}
    yield event(at, "session_start", agent, ticket_id=ticket, **common)
    if consent:
        yield event(
            at + timedelta(seconds=25),
            "consent_granted",
            practice.doctors[0],
            **common,
            consent={
                "scope": list(scope),
                "mode": "view_only",
                "expires_at": (at + timedelta(hours=1)).isoformat(),
            },
        )
    for n, (action, category) in enumerate(accesses, start=1):
        yield event(
            at + timedelta(minutes=n),
            action,
            agent,
            ticket_id=ticket,
            patient_id=rng.choice(practice.patients),
            data_category=category,
            purpose="support",
            **common,
        )
    yield event(at + timedelta(minutes=len(accesses) + 5), "session_end", agent, **common)


Injector = Callable[[Practice, datetime, Simulation], None]


def _label(
    result: Simulation,
    practice: Practice,
    rule_id: str,
    events: list[Event],
    evidence: list[Event],
    description: str,
) -> None:
    result.events += events
    result.labels.append(
        Label(
            rule_id.split(".")[1],
            rule_id,
            practice.id,
            [e["event_id"] for e in evidence],
            description,
        )
    )


def _support_no_consent(practice: Practice, morning: datetime, result: Simulation) -> None:
    events = list(
        _support_session(
            practice,
            morning + timedelta(hours=3, minutes=7),
            consent=False,
            accesses=(("view", "medical"),),
        )
    )
    evidence = [e for e in events if e["action"] == "view"]
    _label(
        result,
        practice,
        "support.no_consent",
        events,
        evidence,
        "a support agent reads medical data in a session nobody consented to",
    )


def _support_non_view(practice: Practice, morning: datetime, result: Simulation) -> None:
    events = list(
        _support_session(
            practice,
            morning + timedelta(hours=4, minutes=2),
            accesses=(("view", "appointment"), ("screenshot", "appointment")),
        )
    )
    evidence = [e for e in events if e["action"] == "screenshot"]
    _label(
        result,
        practice,
        "support.non_view_action",
        events,
        evidence,
        "a support agent takes a screenshot of patient data during a consented session",
    )


def _support_out_of_scope(practice: Practice, morning: datetime, result: Simulation) -> None:
    events = list(
        _support_session(
            practice,
            morning + timedelta(hours=5, minutes=12),
            scope=("appointment",),
            accesses=(("view", "appointment"), ("view", "medical")),
        )
    )
    evidence = [e for e in events if e.get("data_category") == "medical"]
    _label(
        result,
        practice,
        "support.out_of_scope",
        events,
        evidence,
        "a support agent reads medical data when consent covered appointments only",
    )


def _support_location(practice: Practice, morning: datetime, result: Simulation) -> None:
    abroad = {**SUPPORT_AGENT, "id": "sup-ext-007", "country": "US"}
    events = list(_support_session(practice, morning + timedelta(hours=6, minutes=3), agent=abroad))
    _label(
        result,
        practice,
        "support.unapproved_location",
        events,
        [e for e in events if e["actor"]["id"] == abroad["id"]],
        "a support agent works on a practice's data from outside the allowed countries",
    )


def _role_not_permitted(practice: Practice, morning: datetime, result: Simulation) -> None:
    at = morning + timedelta(hours=3, minutes=41)
    patient = practice.patients[0]
    booking = practice.event(
        at - timedelta(days=3),
        "create",
        PATIENT_WEB,
        source="booking",
        patient_id=patient,
        data_category="appointment",
    )
    snoop = practice.event(
        at, "view", practice.secretary, patient_id=patient, data_category="medical"
    )
    _label(
        result,
        practice,
        "access.role_not_permitted",
        [booking, snoop],
        [snoop],
        "a secretary opens a patient's medical record",
    )


def _no_care(practice: Practice, morning: datetime, result: Simulation) -> None:
    at = morning + timedelta(hours=7, minutes=13)
    reads = [
        practice.event(
            at + timedelta(minutes=n),
            "view",
            practice.doctors[1],
            patient_id=f"P-VIP-{n}",
            data_category="medical",
        )
        for n in range(3)
    ]
    _label(
        result,
        practice,
        "access.no_care_relationship",
        reads,
        reads,
        "a practitioner browses the records of patients who have no appointment there",
    )


def _unusual_volume(practice: Practice, morning: datetime, result: Simulation) -> None:
    admin = {"id": f"adm-{practice.id[-2:]}", "role": "admin", "country": "FR"}
    export = practice.event(
        morning + timedelta(hours=8, minutes=30),
        "export",
        admin,
        source="export_service",
        data_category="administrative",
        record_count=2400,
    )
    _label(
        result,
        practice,
        "export.unusual_volume",
        [export],
        [export],
        "an administrator exports the whole patient list at once",
    )


def _unapproved_destination(practice: Practice, morning: datetime, result: Simulation) -> None:
    export = practice.event(
        morning + timedelta(hours=8, minutes=50),
        "download",
        practice.doctors[0],
        source="export_service",
        data_category="document",
        record_count=35,
        purpose="migration",
        destination="usb",
    )
    _label(
        result,
        practice,
        "export.unapproved_destination",
        [export],
        [export],
        "patient documents leave on a USB stick",
    )


def _reidentification(practice: Practice, morning: datetime, result: Simulation) -> None:
    observatory = {"id": "svc-observatory", "role": "service"}
    export = practice.event(
        morning + timedelta(hours=9, minutes=5),
        "export",
        observatory,
        source="export_service",
        data_category="medical",
        record_count=300,
        purpose="research",
        authorization_ref="CNIL-DR-2026-114",
        destination="sftp://partner-research.example/in",
        fields=["patient_key", "birth_date", "gender", "postcode", "diagnosis", "prescriptions"],
    )
    _label(
        result,
        practice,
        "export.reidentification_risk",
        [export],
        [export],
        "a 'pseudonymised' research feed keeps a patient key with quasi-identifiers",
    )


def _hri_bulk(practice: Practice, morning: datetime, result: Simulation) -> None:
    sync = {"id": "svc-hri-sync", "role": "service"}
    at = morning + timedelta(hours=9, minutes=30)
    downloads = [
        practice.event(
            at + timedelta(seconds=20 * n),
            "download",
            sync,
            source="hri_gateway",
            patient_id=patient,
            data_category="reimbursement",
            automated=True,
        )
        for n, patient in enumerate(practice.patients[:25])
    ]
    _label(
        result,
        practice,
        "hri.bulk_download",
        downloads,
        downloads,
        "the HRi connector downloads 25 patients' reimbursement histories automatically",
    )


INCIDENTS: tuple[Injector, ...] = (
    _support_no_consent,
    _support_non_view,
    _support_out_of_scope,
    _support_location,
    _role_not_permitted,
    _no_care,
    _unusual_volume,
    _unapproved_destination,
    _reidentification,
    _hri_bulk,
)

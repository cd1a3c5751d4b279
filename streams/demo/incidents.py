"""Incidents to inject into simulated days: one per rule family, each labelled with the rule
that must catch it and the ids of its evidence events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from streams.demo.practice import (
    PATIENT_WEB,
    SUPPORT_AGENT,
    Event,
    Label,
    Practice,
    Simulation,
    support_session,
)

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


def _support_incident(
    rule_id: str,
    description: str,
    after: timedelta,
    is_evidence: Callable[[Event], bool],
    **session: Any,
) -> Injector:
    """A support session, shaped by ``session``, whose matching events are the evidence."""

    def inject(practice: Practice, morning: datetime, result: Simulation) -> None:
        events = list(support_session(practice, morning + after, **session))
        evidence = [e for e in events if is_evidence(e)]
        _label(result, practice, rule_id, events, evidence, description)

    return inject


ABROAD = {**SUPPORT_AGENT, "id": "sup-ext-007", "country": "US"}

_support_no_consent = _support_incident(
    "support.no_consent",
    "a support agent reads medical data in a session nobody consented to",
    timedelta(hours=3, minutes=7),
    lambda e: e["action"] == "view",
    consent=False,
    accesses=(("view", "medical"),),
)
_support_non_view = _support_incident(
    "support.non_view_action",
    "a support agent takes a screenshot of patient data during a consented session",
    timedelta(hours=4, minutes=2),
    lambda e: e["action"] == "screenshot",
    accesses=(("view", "appointment"), ("screenshot", "appointment")),
)
_support_out_of_scope = _support_incident(
    "support.out_of_scope",
    "a support agent reads medical data when consent covered appointments only",
    timedelta(hours=5, minutes=12),
    lambda e: e.get("data_category") == "medical",
    scope=("appointment",),
    accesses=(("view", "appointment"), ("view", "medical")),
)
_support_location = _support_incident(
    "support.unapproved_location",
    "a support agent works on a practice's data from outside the allowed countries",
    timedelta(hours=6, minutes=3),
    lambda e: e["actor"]["id"] == ABROAD["id"],
    agent=ABROAD,
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

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
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from streams.demo.incidents import INCIDENTS
from streams.demo.practice import (
    BILLING,
    DEMO_POLICY,
    PARIS,
    PATIENT_WEB,
    REMINDERS,
    Event,
    Practice,
    Simulation,
    support_session,
)

__all__ = ["DEMO_POLICY", "Simulation", "simulate"]


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
    yield from support_session(practice, morning + timedelta(hours=rng.randint(2, 6)))
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

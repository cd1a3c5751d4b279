"""A deterministic morning of health-data accesses at a few practices.

Realistic enough to show the pipeline working (booking, consultations, a secretary at the front
desk, a consented remote-support session, an HRi consultation, a migration export); the same
seed always gives the same events and ids, so replaying the demo is idempotent.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

PARIS = timezone(timedelta(hours=1))


def sample_morning(
    practices: int = 3, seed: int = 7, day: str = "2026-11-16"
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime.fromisoformat(day).replace(hour=8, tzinfo=PARIS)
    events: list[dict[str, Any]] = []
    for number in range(1, practices + 1):
        events.extend(_practice_morning(rng, number, start))
    events.sort(key=lambda event: (event["timestamp"], event["event_id"]))
    return events


def _practice_morning(rng: random.Random, number: int, start: datetime) -> Iterator[dict[str, Any]]:
    practice = f"prac-75-{number:04d}"
    doctor = {"id": f"dr-{number:02d}", "role": "practitioner", "country": "FR"}
    secretary = {"id": f"sec-{number:02d}", "role": "secretary", "country": "FR"}
    counter = iter(range(10_000))

    def event(at: datetime, action: str, actor: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {
            "event_id": f"demo-{practice}-{next(counter):04d}",
            "timestamp": at.isoformat(),
            "source": fields.pop("source", "practice_app"),
            "action": action,
            "actor": actor,
            "practice_id": practice,
            **fields,
        }

    at = start
    for slot in range(12):
        patient = f"P-{number}{rng.randrange(10_000, 99_999)}"
        at += timedelta(minutes=rng.randint(12, 25))
        yield event(
            at - timedelta(days=2),
            "create",
            {"id": "booking-web", "role": "patient"},
            source="booking",
            patient_id=patient,
            data_category="appointment",
        )
        yield event(at, "view", secretary, patient_id=patient, data_category="administrative")
        yield event(
            at + timedelta(minutes=1),
            "view",
            doctor,
            patient_id=patient,
            data_category="medical",
            purpose="care",
        )
        if slot % 3 == 0:
            yield event(
                at + timedelta(minutes=4),
                "view",
                doctor,
                source="hri_gateway",
                patient_id=patient,
                data_category="reimbursement",
                purpose="care",
            )
        yield event(
            at + timedelta(minutes=9),
            "create",
            doctor,
            patient_id=patient,
            data_category="prescription",
            purpose="care",
        )
        yield event(
            at + timedelta(minutes=11),
            "create",
            secretary,
            patient_id=patient,
            data_category="billing",
            purpose="billing",
        )
    yield from _support_session(event, practice, doctor, start + timedelta(hours=2))


def _support_session(
    event: Any, practice: str, doctor: dict[str, Any], at: datetime
) -> Iterator[dict[str, Any]]:
    agent = {
        "id": "sup-ma-042",
        "role": "support_agent",
        "organization": "support-outsourcing",
        "country": "MA",
    }
    session = f"rs-{practice[-4:]}"
    yield event(
        at, "session_start", agent, source="remote_support", session_id=session, ticket_id="T-20931"
    )
    yield event(
        at + timedelta(seconds=20),
        "consent_granted",
        doctor,
        source="remote_support",
        session_id=session,
        consent={
            "scope": ["appointment", "administrative"],
            "mode": "view_only",
            "expires_at": (at + timedelta(hours=1)).isoformat(),
        },
    )
    yield event(
        at + timedelta(minutes=1),
        "view",
        agent,
        source="remote_support",
        session_id=session,
        ticket_id="T-20931",
        data_category="appointment",
        purpose="support",
    )
    yield event(
        at + timedelta(minutes=9), "session_end", agent, source="remote_support", session_id=session
    )

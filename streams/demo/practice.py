"""The simulated world: practices with their staff and patients, and its labelled incidents.

Shared by the benign scenario (``simulate``) and the injected incidents (``incidents``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
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


def support_session(
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

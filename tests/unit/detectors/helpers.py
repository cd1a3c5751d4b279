"""Plain event lists for detector tests: a builder with sensible defaults, and a runner."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from typing import Any

from detectors.alerts import Alert
from detectors.models import AccessEvent
from detectors.policy import Policy, parse_policy
from detectors.registry import all_detectors
from detectors.runner import detect

T0 = datetime.fromisoformat("2026-11-16T10:00:00+01:00")
_ids = itertools.count(1)

SUPPORT = {"id": "sup-ma-042", "role": "support_agent", "country": "MA"}
DOCTOR = {"id": "dr-martin", "role": "practitioner", "country": "FR"}
SECRETARY = {"id": "sec-anne", "role": "secretary", "country": "FR"}


def at(seconds: float = 0, *, minutes: float = 0, days: float = 0) -> str:
    return (T0 + timedelta(seconds=seconds, minutes=minutes, days=days)).isoformat()


def ev(action: str, actor: dict[str, Any], when: str, **fields: Any) -> AccessEvent:
    data = {
        "event_id": fields.pop("event_id", f"t-{next(_ids):05d}"),
        "timestamp": when,
        "source": fields.pop("source", "practice_app"),
        "action": action,
        "actor": actor,
        "practice_id": fields.pop("practice_id", "prac-1"),
        **fields,
    }
    return AccessEvent.model_validate_json(json.dumps(data))


def run(events: list[AccessEvent], policy: Policy | None = None, **overrides: Any) -> list[Alert]:
    policy = policy or (parse_policy(overrides) if overrides else Policy())
    return detect(events, all_detectors(policy))


def fired(alerts: list[Alert], rule_id: str) -> list[Alert]:
    return [alert for alert in alerts if alert.rule_id == rule_id]


def session(
    start: float = 0,
    *,
    consent_at: float | None = 20,
    scope: list[str] | None = None,
    **consent: Any,
) -> list[AccessEvent]:
    """A remote-support session at prac-1 (rs-1), with a practitioner's consent if asked."""
    events = [
        ev("session_start", SUPPORT, at(start), source="remote_support", session_id="rs-1"),
    ]
    if consent_at is not None:
        body: dict[str, Any] = {"mode": "view_only", **consent}
        if scope is not None:
            body["scope"] = scope
        events.append(
            ev(
                "consent_granted",
                DOCTOR,
                at(consent_at),
                source="remote_support",
                session_id="rs-1",
                consent=body,
            )
        )
    return events


def support_view(seconds: float, category: str = "appointment", **fields: Any) -> AccessEvent:
    return ev(
        fields.pop("action", "view"),
        fields.pop("actor", SUPPORT),
        at(seconds),
        source="remote_support",
        session_id=fields.pop("session_id", "rs-1"),
        patient_id=fields.pop("patient_id", "P-1"),
        data_category=category,
        **fields,
    )

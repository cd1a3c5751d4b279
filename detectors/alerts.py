"""Alerts: the contract's shape, deterministic ids, and grouping of repeated findings.

An analyst wants one alert per incident, not one per event: a support agent browsing twenty
records without consent is one incident. Each finding names a *group* (e.g. the session, or the
actor) and falls in a time bucket of that group; its alert id is a hash of rule, group and
bucket. Detectors emit one single-evidence alert per finding, and ``merge`` folds alerts with the
same id into one. The id and the merged alert are the same whatever order the evidence came in,
in a replay, a restart or the offline runner, so every write downstream is idempotent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from detectors.models import AccessEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Alert(BaseModel):
    """One incident: the contract's fields, plus what an analyst needs to triage it."""

    model_config = ConfigDict(extra="forbid")

    alert_id: str
    rule_id: str
    severity: Severity
    timestamp: AwareDatetime  # event time of the earliest evidence
    last_seen: AwareDatetime  # event time of the latest evidence
    actor_id: str | None = None
    practice_id: str | None = None
    session_id: str | None = None
    patients: list[str] = []  # pseudonyms, never raw ids
    event_ids: list[str]
    event_count: int
    summary: str
    headline: str  # the earliest finding's sentence; summary adds the count
    group: str
    window_start: AwareDatetime


@dataclass(frozen=True)
class Finding:
    """One piece of evidence for a rule, as a detector sees it."""

    rule_id: str
    severity: Severity
    event: AccessEvent
    group: str  # what findings are grouped by, e.g. "session:prac-1/rs-5531"
    headline: str  # one sentence an analyst understands without reading code
    # Sliding-window rules name the incident a finding extends (``detectors.base.Incident``);
    # the others are grouped in fixed buckets of ``alerts.group_minutes``.
    incident: datetime | None = None

    @property
    def at(self) -> datetime:
        return self.event.timestamp


def bucket_start(at: datetime, window: timedelta) -> datetime:
    size = int(window.total_seconds())
    seconds = int((at.astimezone(UTC) - EPOCH).total_seconds())
    return EPOCH + timedelta(seconds=seconds - seconds % size)


def alert_id(rule_id: str, group: str, window_start: datetime) -> str:
    text = f"{rule_id}|{group}|{window_start.astimezone(UTC).isoformat()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _summary(headline: str, count: int) -> str:
    if count == 1:
        return headline
    return f"{headline} ({count} events in this incident)"


def single_alert(finding: Finding, window: timedelta) -> Alert:
    """The alert of one finding, to be merged with the others of its group and bucket."""
    event = finding.event
    start = finding.incident or bucket_start(finding.at, window)
    return Alert(
        alert_id=alert_id(finding.rule_id, finding.group, start),
        rule_id=finding.rule_id,
        severity=finding.severity,
        timestamp=finding.at,
        last_seen=finding.at,
        actor_id=event.actor.id,
        practice_id=event.practice_id,
        session_id=event.session_id,
        patients=[event.patient_id] if event.patient_id else [],
        event_ids=[event.event_id],
        event_count=1,
        summary=finding.headline,
        headline=finding.headline,
        group=finding.group,
        window_start=start,
    )


def merge(alert: Alert, other: Alert) -> Alert:
    """Two versions of one alert (same id) as one: commutative, associative and idempotent, so
    the merged alert does not depend on the order its evidence arrived in, or on repeats."""
    if alert.alert_id != other.alert_id:
        raise ValueError(f"cannot merge alerts {alert.alert_id} and {other.alert_id}")
    ids = {*alert.event_ids, *other.event_ids}
    if len(ids) == len(alert.event_ids) and alert.severity == max(
        alert.severity, other.severity, key=_rank
    ):
        return alert
    first = min(alert, other, key=lambda a: (a.timestamp, a.event_ids[0]))
    lead = first.event_ids[0]
    headline = first.headline
    return first.model_copy(
        update={
            "last_seen": max(alert.last_seen, other.last_seen),
            "severity": max(alert.severity, other.severity, key=_rank),
            "event_ids": [lead, *sorted(ids - {lead})],
            "event_count": len(ids),
            "patients": sorted({*alert.patients, *other.patients}),
            "summary": _summary(headline, len(ids)),
        }
    )


_ORDER = list(Severity)


def _rank(severity: Severity) -> int:
    return _ORDER.index(severity)

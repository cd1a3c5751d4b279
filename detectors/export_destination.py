"""``export.unapproved_destination``: data leaves only to destinations the deployment declared
for the export's purpose (deny by default: an empty allowlist alerts on every destination)."""

from __future__ import annotations

from datetime import datetime

from detectors.alerts import Alert, Severity
from detectors.base import BaseDetector, DetectorState
from detectors.models import AccessEvent


class UnapprovedDestinationDetector(BaseDetector):
    rule_id = "export.unapproved_destination"
    stateless = True
    default_severity = Severity.HIGH

    def key(self, event: AccessEvent) -> str | None:
        return f"actor:{event.actor.id}" if event.destination is not None else None

    def initial(self) -> DetectorState:
        return DetectorState()

    def step(self, state: DetectorState, event: AccessEvent) -> tuple[DetectorState, list[Alert]]:
        destination = event.destination
        if destination is None:
            return state, []
        purpose = event.purpose.value if event.purpose else None
        if self.policy.export.destination_allowed(purpose, destination):
            return state, []
        headline = (
            f"{event.actor.role.value} {event.actor.id} sent {event.record_count} record(s) of "
            f"practice {event.practice_id} to {destination} (purpose: {purpose or 'none given'}), "
            "a destination not on the allowlist for that purpose"
        )
        group = f"actor:{event.actor.id}/{destination}"
        return state, self.report([self.finding(event, group, headline)])

    def expire(self, state: DetectorState, now: datetime) -> tuple[DetectorState, list[Alert]]:
        return state, []

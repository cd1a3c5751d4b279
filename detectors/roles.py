"""``access.role_not_permitted``: need to know by job. Outside support sessions, each role may
touch only the data categories the role policy grants it (a secretary does not read medical
notes; a service account reads only what its declared purpose needs)."""

from __future__ import annotations

from datetime import datetime

from detectors.alerts import Alert, Severity
from detectors.base import BaseDetector, DetectorState
from detectors.models import AccessEvent, Role


class RoleNotPermittedDetector(BaseDetector):
    rule_id = "access.role_not_permitted"
    stateless = True
    default_severity = Severity.MEDIUM

    def key(self, event: AccessEvent) -> str | None:
        if event.data_category is None or event.actor.role is Role.SUPPORT_AGENT:
            return None
        return f"actor:{event.actor.id}"

    def initial(self) -> DetectorState:
        return DetectorState()

    def step(self, state: DetectorState, event: AccessEvent) -> tuple[DetectorState, list[Alert]]:
        category = event.data_category
        role = event.actor.role
        if category is None or category in self.policy.roles.allowed(role, event.actor.id):
            return state, []
        whom = " of a patient" if event.patient_id else ""
        headline = (
            f"{role.value} {event.actor.id} performed '{event.action.value}' on {category.value} "
            f"data{whom} at practice {event.practice_id}, which the role policy does not allow "
            f"a {role.value}"
        )
        group = f"actor:{event.actor.id}/{category.value}"
        return state, self.report([self.finding(event, group, headline)])

    def expire(self, state: DetectorState, now: datetime) -> tuple[DetectorState, list[Alert]]:
        return state, []

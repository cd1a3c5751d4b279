"""``access.no_care_relationship``: reading a patient's medical data at a practice where the
patient has no appointment or consultation around that time is the strongest snooping signal.

State is per practice and patient: the times of care events (appointments booked or changed,
consultations). A read is judged once the event-time clock passes the end of its window
(``days_after``, by default one day), because an appointment booked just after a read also
justifies it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, Field

from detectors.alerts import Alert, Severity
from detectors.base import BaseDetector, DetectorState
from detectors.models import AccessEvent, Action, DataCategory

READS = {
    Action.VIEW,
    Action.SEARCH,
    Action.PRINT,
    Action.DOWNLOAD,
    Action.EXPORT,
    Action.COPY,
    Action.SCREENSHOT,
}


class CareState(DetectorState):
    care: list[AwareDatetime] = Field(default_factory=list)  # appointments, consultations


class NoCareRelationshipDetector(BaseDetector):
    rule_id = "access.no_care_relationship"
    default_severity = Severity.MEDIUM

    def key(self, event: AccessEvent) -> str | None:
        if event.practice_id is None or event.patient_id is None:
            return None
        return f"care:{event.practice_id}/{event.patient_id}"

    def initial(self) -> CareState:
        return CareState()

    def step(self, state: CareState, event: AccessEvent) -> tuple[CareState, list[Alert]]:
        if self._is_care(event):
            state.care = sorted([*state.care, event.timestamp])
        elif self._needs_care(event) and not self._covered(state, event.timestamp, future=False):
            self.wait(state, event, self.policy.care.after)
        return state, []

    def forget_at(self, state: CareState) -> datetime | None:
        if state.pending or not state.care:
            return None  # pending decisions bring ``expire`` back; it trims then
        care = self.policy.care
        return state.care[-1] + care.before + care.after + self._slack()

    def expire(self, state: CareState, now: datetime) -> tuple[CareState, list[Alert]]:
        findings = [
            self.finding(access, f"actor:{access.actor.id}", self._headline(access))
            for access in self.due(state, now)
            if not self._covered(state, access.timestamp, future=True)
        ]
        alerts = self.report(findings)
        horizon = now - self.policy.care.before - self.policy.care.after - self._slack()
        state.care = [at for at in state.care if at > horizon]
        return state, alerts

    def _slack(self) -> timedelta:
        return self.policy.alerts.lateness

    def _is_care(self, event: AccessEvent) -> bool:
        care = self.policy.care
        if event.source in care.consultation_sources:
            return True
        return (
            event.data_category is DataCategory.APPOINTMENT
            and event.action in care.appointment_actions
        )

    def _needs_care(self, event: AccessEvent) -> bool:
        care = self.policy.care
        return (
            event.actor.role in care.roles
            and event.data_category in care.categories
            and event.action in READS
        )

    def _covered(self, state: CareState, at: datetime, *, future: bool) -> bool:
        care = self.policy.care
        start, end = at - care.before, (at + care.after if future else at)
        return any(start <= moment <= end for moment in state.care)

    def _headline(self, access: AccessEvent) -> str:
        category = access.data_category.value if access.data_category else "medical"
        return (
            f"{access.actor.role.value} {access.actor.id} read {category} data of a patient at "
            f"practice {access.practice_id} who has no appointment or consultation there between "
            f"{self.policy.care.days_before:g} days before and {self.policy.care.days_after:g} "
            "day(s) after"
        )

"""``support.non_view_action`` and ``support.unapproved_location``: what support may do with
patient data (view and search only: no copy, recording or retention), and from where.

Both judge one event on its own, so they decide at once; the state only groups the findings of
one agent into one alert per window.
"""

from __future__ import annotations

from datetime import datetime

from detectors.alerts import Alert, Severity
from detectors.base import BaseDetector, DetectorState
from detectors.models import AccessEvent, Role
from detectors.support_consent import support_access


class _ActorDetector(BaseDetector):
    stateless = True

    def key(self, event: AccessEvent) -> str | None:
        return f"actor:{event.actor.id}" if event.actor.role is Role.SUPPORT_AGENT else None

    def initial(self) -> DetectorState:
        return DetectorState()

    def expire(self, state: DetectorState, now: datetime) -> tuple[DetectorState, list[Alert]]:
        return state, []


class NonViewActionDetector(_ActorDetector):
    rule_id = "support.non_view_action"
    default_severity = Severity.HIGH

    def step(self, state: DetectorState, event: AccessEvent) -> tuple[DetectorState, list[Alert]]:
        if not support_access(event) or event.action in self.policy.support.view_actions:
            return state, []
        what = f"{event.data_category.value} data" if event.data_category else "patient data"
        where = f" in session {event.session_id}" if event.session_id else ""
        headline = (
            f"support agent {event.actor.id} performed '{event.action.value}' on {what} at "
            f"practice {event.practice_id}{where}: support access is view-only, with nothing kept"
        )
        return state, self.report([self.finding(event, f"actor:{event.actor.id}", headline)])


class UnapprovedLocationDetector(_ActorDetector):
    rule_id = "support.unapproved_location"
    default_severity = Severity.HIGH

    def step(self, state: DetectorState, event: AccessEvent) -> tuple[DetectorState, list[Alert]]:
        country = event.actor.country
        if country is None or country in self.policy.support.allowed_countries:
            return state, []
        headline = (
            f"support agent {event.actor.id} acted ('{event.action.value}') from {country}, "
            f"outside the countries support may work from"
            + (f", on data of practice {event.practice_id}" if event.practice_id else "")
        )
        group = f"actor:{event.actor.id}/{country}"
        return state, self.report([self.finding(event, group, headline)])

"""``support.no_consent`` and ``support.out_of_scope``: support sees patient data only inside a
session whose practitioner (or secretary) consented, and only within the consent's scope.

State is per session (practice + session id): its start, end, consents and revocations, kept
with their event times so any access can be judged against the consent *in force at that
moment*. Accesses wait ``clock_skew + lateness`` before being judged, so a consent arriving a few
seconds late, or stamped a few seconds after the first access, is taken into account.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from detectors.alerts import Alert, Finding, Severity
from detectors.base import BaseDetector, DetectorState, touches_patient_data
from detectors.models import AccessEvent, Action, DataCategory, Role

SESSION_MEMORY = timedelta(days=1)


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # shared by state snapshots

    at: AwareDatetime
    by: str
    scope: list[DataCategory] | None = None
    expires_at: AwareDatetime | None = None


class SessionState(DetectorState):
    practice_id: str | None = None
    started: AwareDatetime | None = None
    ended: AwareDatetime | None = None
    grants: list[Grant] = Field(default_factory=list)
    revocations: list[AwareDatetime] = Field(default_factory=list)
    last_seen: AwareDatetime | None = None

    def consent_at(self, at: datetime, skew_until: datetime) -> Grant | None:
        """The consent in force at ``at``; a grant stamped up to ``skew_until`` counts."""
        if self.ended is not None and self.ended <= at:
            return None
        for grant in sorted(self.grants, key=lambda g: g.at, reverse=True):
            if grant.at > skew_until:
                continue
            revoked = any(grant.at <= r <= at for r in self.revocations)
            expired = grant.expires_at is not None and grant.expires_at <= at
            if not revoked and not expired:
                return grant
        return None


def support_access(event: AccessEvent) -> bool:
    return event.actor.role is Role.SUPPORT_AGENT and touches_patient_data(event)


def _subject(event: AccessEvent) -> str:
    category = f"{event.data_category.value} data" if event.data_category else "data"
    whom = "of a patient " if event.patient_id else ""
    verb = {"view": "viewed", "search": "searched"}.get(event.action.value, event.action.value)
    return f"support agent {event.actor.id} {verb} {category} {whom}at practice {event.practice_id}"


class _SessionDetector(BaseDetector):
    """Session bookkeeping shared by the two consent rules."""

    def key(self, event: AccessEvent) -> str | None:
        if event.session_id is not None:
            return f"session:{event.practice_id}/{event.session_id}"
        if support_access(event):
            return f"actor:{event.actor.id}"  # support access outside any session
        return None

    def initial(self) -> SessionState:
        return SessionState()

    def step(self, state: SessionState, event: AccessEvent) -> tuple[SessionState, list[Alert]]:
        state.last_seen = max(filter(None, [state.last_seen, event.timestamp]))
        self._record_lifecycle(state, event)
        if not support_access(event):
            return state, []
        if event.session_id is None:
            return state, self.report(self.without_session(event))
        self.wait(state, event, self.policy.support.clock_skew)
        return state, []

    def expire(self, state: SessionState, now: datetime) -> tuple[SessionState, list[Alert]]:
        findings: list[Finding] = []
        for access in self.due(state, now):
            skew_until = access.timestamp + self.policy.support.clock_skew
            consent = state.consent_at(access.timestamp, skew_until)
            findings += self.judge(state, access, consent)
        alerts = self.report(findings)
        if state.last_seen is not None and now - state.last_seen > SESSION_MEMORY:
            # Quiet for a day: forget the session.
            state = SessionState(pending=state.pending)
        return state, alerts

    def forget_at(self, state: SessionState) -> datetime | None:
        if state.pending or state.last_seen is None:
            return None  # pending decisions bring ``expire`` back; it forgets then
        return state.last_seen + SESSION_MEMORY + timedelta(microseconds=1)

    def _record_lifecycle(self, state: SessionState, event: AccessEvent) -> None:
        if event.action is Action.SESSION_START:
            state.started = event.timestamp
            state.practice_id = state.practice_id or event.practice_id
        elif event.action is Action.SESSION_END:
            state.ended = event.timestamp
        elif event.action is Action.CONSENT_GRANTED and self._may_consent(event):
            consent = event.consent
            state.grants.append(
                Grant(
                    at=event.timestamp,
                    by=event.actor.id,
                    scope=consent.scope if consent else None,
                    expires_at=consent.expires_at if consent else None,
                )
            )
        elif event.action is Action.CONSENT_REVOKED:
            state.revocations.append(event.timestamp)

    def _may_consent(self, event: AccessEvent) -> bool:
        """Only the practice's own practitioners or secretaries can let support in."""
        return event.actor.role in self.policy.support.consent_roles

    def without_session(self, event: AccessEvent) -> list[Finding]:
        return []

    def judge(
        self, state: SessionState, access: AccessEvent, consent: Grant | None
    ) -> list[Finding]:
        raise NotImplementedError


class NoConsentDetector(_SessionDetector):
    rule_id = "support.no_consent"
    default_severity = Severity.HIGH

    def without_session(self, event: AccessEvent) -> list[Finding]:
        headline = f"{_subject(event)} outside any support session, so without consent"
        return [self.finding(event, f"actor:{event.actor.id}", headline)]

    def judge(
        self, state: SessionState, access: AccessEvent, consent: Grant | None
    ) -> list[Finding]:
        # The key holds the practice: a consent given at another practice is never in this state.
        if consent is not None:
            return []
        why = self._why(state, access)
        headline = f"{_subject(access)} in session {access.session_id}, {why}"
        return [self.finding(access, f"session:{access.practice_id}/{access.session_id}", headline)]

    def _why(self, state: SessionState, access: AccessEvent) -> str:
        at = access.timestamp
        if state.ended is not None and state.ended <= at:
            return "after the session had ended"
        if not state.grants:
            return "for which no consent was in force"
        if any(r <= at for r in state.revocations):
            return "after the consent had been revoked"
        if any(g.expires_at is not None and g.expires_at <= at for g in state.grants):
            return "after the consent had expired"
        return "for which no consent was in force"


class OutOfScopeDetector(_SessionDetector):
    rule_id = "support.out_of_scope"
    default_severity = Severity.MEDIUM

    def judge(
        self, state: SessionState, access: AccessEvent, consent: Grant | None
    ) -> list[Finding]:
        if consent is None or consent.scope is None or access.data_category is None:
            return []
        if access.data_category in consent.scope:
            return []
        scope = ", ".join(c.value for c in consent.scope) or "nothing"
        headline = (
            f"{_subject(access)} in session {access.session_id}, outside the consent given by "
            f"{consent.by} (scope: {scope})"
        )
        return [self.finding(access, f"session:{access.practice_id}/{access.session_id}", headline)]

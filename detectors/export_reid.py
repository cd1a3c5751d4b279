"""``export.reidentification_risk``: pseudonymised is not anonymous (the 2024 sanction).

Two detectors share the rule:
- ``ExportFieldsDetector`` judges one export on its own: direct identifiers in a pseudonymised
  export; a persistent patient key together with quasi-identifiers; a research export with no
  authorisation reference.
- ``CrossPracticeLinkageDetector`` remembers, per patient key, which practices exported it: the
  same key leaving two practices makes the patient linkable across them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from detectors.alerts import Alert, Finding, Severity
from detectors.base import BaseDetector, DetectorState
from detectors.models import AccessEvent, Action, Purpose


class ExportFieldsDetector(BaseDetector):
    rule_id = "export.reidentification_risk"
    stateless = True
    default_severity = Severity.CRITICAL

    @property
    def name(self) -> str:
        return f"{self.rule_id}/fields"

    def key(self, event: AccessEvent) -> str | None:
        return f"actor:{event.actor.id}" if event.action is Action.EXPORT else None

    def initial(self) -> DetectorState:
        return DetectorState()

    def step(self, state: DetectorState, event: AccessEvent) -> tuple[DetectorState, list[Alert]]:
        problems = self.problems(event)
        if not problems:
            return state, []
        headline = (
            f"{event.actor.role.value} {event.actor.id} exported {event.record_count} record(s) "
            f"of practice {event.practice_id} to {event.destination or 'an unnamed destination'} "
            f"(purpose: {event.purpose.value if event.purpose else 'none given'}) that stay "
            f"re-identifiable: {'; '.join(problems)}"
        )
        group = f"export:{event.actor.id}/{event.destination}"
        return state, self.report([self.finding(event, group, headline)])

    def problems(self, event: AccessEvent) -> list[str]:
        policy = self.policy.export
        problems = []
        if event.purpose is Purpose.RESEARCH and not event.authorization_ref:
            problems.append("a research export with no authorization reference")
        if not self._meant_pseudonymised(event):
            return problems
        fields = {f.lower() for f in event.fields or []}
        direct = sorted(fields & {f.lower() for f in policy.direct_identifiers})
        keys = sorted(fields & {f.lower() for f in policy.persistent_keys})
        quasi = sorted(fields & {f.lower() for f in policy.quasi_identifiers})
        if direct:
            problems.append(f"direct identifiers ({', '.join(direct)})")
        if keys and quasi:
            problems.append(
                f"a persistent key ({', '.join(keys)}) with quasi-identifiers ({', '.join(quasi)})"
            )
        return problems

    def _meant_pseudonymised(self, event: AccessEvent) -> bool:
        declared = (event.attributes or {}).get("pseudonymised") is True
        return declared or event.purpose in self.policy.export.pseudonymised_purposes

    def expire(self, state: DetectorState, now: datetime) -> tuple[DetectorState, list[Alert]]:
        return state, []


class PracticeExport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # shared by state snapshots

    practice_id: str
    at: AwareDatetime


class LinkageState(DetectorState):
    exports: list[PracticeExport] = Field(default_factory=list)


class CrossPracticeLinkageDetector(BaseDetector):
    rule_id = "export.reidentification_risk"
    default_severity = Severity.CRITICAL

    @property
    def name(self) -> str:
        return f"{self.rule_id}/linkage"

    def key(self, event: AccessEvent) -> str | None:
        if event.action is not Action.EXPORT or event.patient_id is None:
            return None
        return f"patient:{event.patient_id}"

    def initial(self) -> LinkageState:
        return LinkageState()

    def step(self, state: LinkageState, event: AccessEvent) -> tuple[LinkageState, list[Alert]]:
        if event.practice_id is None:
            return state, []
        state.exports.append(PracticeExport(practice_id=event.practice_id, at=event.timestamp))
        if self._linked(state, event):
            # Another practice's export already seen: later events cannot unlink the patient.
            return state, self.report([self._finding(event)])
        # Not yet: the other practice's export may arrive late; judged again then.
        self.wait(state, event, timedelta(0))
        return state, []

    def expire(self, state: LinkageState, now: datetime) -> tuple[LinkageState, list[Alert]]:
        window = timedelta(days=self.policy.export.linkage_days)
        due = self.due(state, now)
        findings = [self._finding(export) for export in due if self._linked(state, export)]
        oldest = now - window - self.policy.alerts.lateness
        state.exports = [e for e in state.exports if e.at > oldest]
        return state, self.report(findings)

    def forget_at(self, state: LinkageState) -> datetime | None:
        if state.pending or not state.exports:
            return None  # pending decisions bring ``expire`` back; it trims then
        window = timedelta(days=self.policy.export.linkage_days)
        return max(e.at for e in state.exports) + window + self.policy.alerts.lateness

    def _linked(self, state: LinkageState, export: AccessEvent) -> bool:
        window = timedelta(days=self.policy.export.linkage_days)
        return any(
            e.practice_id != export.practice_id
            and export.timestamp - window <= e.at <= export.timestamp
            for e in state.exports
        )

    def _finding(self, export: AccessEvent) -> Finding:
        """The other practices are not named: which of them had arrived when the export was
        judged depends on arrival order, and the incident must not (the history holds them)."""
        days = self.policy.export.linkage_days
        headline = (
            f"{export.actor.id} exported a patient key from practice {export.practice_id} that "
            f"another practice had exported within the previous {days} days: the patient is "
            "linkable across practices"
        )
        return self.finding(export, f"patient:{export.patient_id}", headline)

"""``hri.bulk_download``: reimbursement histories (HRi) are to be consulted on purpose, not
harvested (the 2024 sanction). Fires on automated downloads, on downloads with no view of the
same patient by the same actor shortly before, and on an actor downloading the histories of
more distinct patients than the threshold within the window.

State is per actor: their recent HRi views by patient and their downloads of the window. A
download is judged once the clock passes it (plus lateness), so a view that arrives late but
happened before still counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from detectors.alerts import Alert, Finding, Severity
from detectors.base import BaseDetector, DetectorState, Incident, open_incidents
from detectors.models import AccessEvent, Action, DataCategory


class Download(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # shared by state snapshots

    at: AwareDatetime
    patient: str


class HriState(DetectorState):
    views: dict[str, list[AwareDatetime]] = Field(default_factory=dict)
    downloads: list[Download] = Field(default_factory=list)
    incidents: list[Incident] = Field(default_factory=list)  # an actor's ongoing harvest


class BulkDownloadDetector(BaseDetector):
    rule_id = "hri.bulk_download"
    default_severity = Severity.HIGH

    def key(self, event: AccessEvent) -> str | None:
        return f"actor:{event.actor.id}" if self._is_hri(event) else None

    def initial(self) -> HriState:
        return HriState()

    def step(self, state: HriState, event: AccessEvent) -> tuple[HriState, list[Alert]]:
        if not self._is_hri(event) or event.patient_id is None:
            return state, []
        if event.action is Action.VIEW:
            state.views.setdefault(event.patient_id, []).append(event.timestamp)
            return state, []
        if event.action is not Action.DOWNLOAD:
            return state, []
        state.downloads.append(Download(at=event.timestamp, patient=event.patient_id))
        # Findings no later event can refute alert at once; the others wait for lateness.
        reason = "an automated download, not a consultation" if event.automated else None
        reason = reason or self._over_threshold(state, event)
        if reason:
            return state, self.report([self._finding(state, event, reason)])
        self.wait(state, event, timedelta(0))
        return state, []

    def expire(self, state: HriState, now: datetime) -> tuple[HriState, list[Alert]]:
        findings: list[Finding] = []
        for download in self.due(state, now):
            reason = self._reason(state, download)
            if reason:
                findings.append(self._finding(state, download, reason))
        self._forget_old(state, now)
        return state, self.report(findings)

    def forget_at(self, state: HriState) -> datetime | None:
        if state.pending:
            return None  # pending decisions bring ``expire`` back; it trims then
        times = [d.at for d in state.downloads] + [t for ts in state.views.values() for t in ts]
        if not times:
            return None
        policy = self.policy.hri
        return max(times) + self.policy.alerts.lateness + max(policy.window, policy.view_before)

    def _finding(self, state: HriState, download: AccessEvent, reason: str) -> Finding:
        """A harvest is one incident while its downloads keep coming within one window of each
        other (``Incident``), however many alert buckets it spans."""
        incident = self.incident(state.incidents, download.timestamp, self.policy.hri.window)
        headline = self._headline(download, reason)
        return self.finding(download, f"actor:{download.actor.id}", headline, incident)

    def _over_threshold(self, state: HriState, download: AccessEvent) -> str | None:
        """More distinct patients than allowed in the window ending at this download: later
        events can only add patients, so this is final the moment it is seen. The sentence
        names the threshold, not the count, which depends on what has arrived so far."""
        policy = self.policy.hri
        at = download.timestamp
        patients = {d.patient for d in state.downloads if at - policy.window < d.at <= at}
        if len(patients) <= policy.max_patients:
            return None
        return (
            f"more than {policy.max_patients} distinct patients' histories within "
            f"{policy.window_minutes:g} min"
        )

    def _reason(self, state: HriState, download: AccessEvent) -> str | None:
        policy = self.policy.hri
        at = download.timestamp
        over = self._over_threshold(state, download)
        if over:
            return over
        views = state.views.get(download.patient_id or "", [])
        if not any(at - policy.view_before <= v <= at for v in views):
            minutes = f"{policy.view_before_minutes:g}"
            return f"no view of that patient's history in the {minutes} min before"
        return None

    def _forget_old(self, state: HriState, now: datetime) -> None:
        policy = self.policy.hri
        waiting = min((p.event.timestamp for p in state.pending), default=now)
        keep_from = min(now - self.policy.alerts.lateness, waiting) - max(
            policy.window, policy.view_before
        )
        state.downloads = [d for d in state.downloads if d.at > keep_from]
        views = {p: [v for v in times if v > keep_from] for p, times in state.views.items()}
        state.views = {p: times for p, times in views.items() if times}
        still = min(now - self.policy.alerts.lateness, waiting)  # a finding may yet extend them
        state.incidents = open_incidents(state.incidents, still, policy.window)

    def _is_hri(self, event: AccessEvent) -> bool:
        return (
            event.source == self.policy.hri.source
            or event.data_category is DataCategory.REIMBURSEMENT
        )

    def _headline(self, event: AccessEvent, reason: str) -> str:
        return (
            f"{event.actor.role.value} {event.actor.id} downloaded the reimbursement history "
            f"(HRi) of a patient at practice {event.practice_id}: {reason}"
        )

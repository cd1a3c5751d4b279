"""``export.unusual_volume``: an actor's exported or downloaded records over a sliding window
far above both an absolute floor and that actor's own recent habit.

State is per actor: the exports of the current window (for the sliding sum) and daily totals of
the last ``baseline_days`` (for the median). Days without exports count as zero, so a first huge
export (a cold start, median 0) is judged by the floor alone and is not hidden.
"""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from detectors.alerts import Alert, Finding, Severity
from detectors.base import BaseDetector, DetectorState, Incident, open_incidents
from detectors.models import AccessEvent


class Export(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # shared by state snapshots

    at: AwareDatetime
    records: int
    event_id: str


class VolumeState(DetectorState):
    exports: list[Export] = Field(default_factory=list)  # the last window's, any order
    daily: dict[date, int] = Field(default_factory=dict)  # records per UTC day
    incidents: list[Incident] = Field(default_factory=list)  # episodes over the threshold


class UnusualVolumeDetector(BaseDetector):
    rule_id = "export.unusual_volume"
    default_severity = Severity.HIGH

    def key(self, event: AccessEvent) -> str | None:
        return f"actor:{event.actor.id}" if event.action in self.policy.export.actions else None

    def initial(self) -> VolumeState:
        return VolumeState()

    def step(self, state: VolumeState, event: AccessEvent) -> tuple[VolumeState, list[Alert]]:
        if event.action not in self.policy.export.actions or event.record_count == 0:
            return state, []
        if any(e.event_id == event.event_id for e in state.exports):
            return state, []  # a redelivery: counted once
        export = Export(at=event.timestamp, records=event.record_count, event_id=event.event_id)
        state.exports.append(export)
        day = _day(event.timestamp)
        state.daily[day] = state.daily.get(day, 0) + event.record_count
        if self._over(state, event):
            # Later exports can only add to the window: a threshold crossed stays crossed.
            return state, self.report([self._finding(state, event)])
        # Not yet: exports stamped before this one may still arrive; judged again then.
        self.wait(state, event, timedelta(0))
        return state, []

    def expire(self, state: VolumeState, now: datetime) -> tuple[VolumeState, list[Alert]]:
        findings = [
            self._finding(state, export)
            for export in self.due(state, now)
            if self._over(state, export)
        ]
        self._forget_old(state, now)
        return state, self.report(findings)

    def forget_at(self, state: VolumeState) -> datetime | None:
        if state.pending:
            return None  # pending decisions bring ``expire`` back; it trims then
        policy = self.policy.export
        ends = []
        if state.exports:
            newest = max(e.at for e in state.exports)
            ends.append(newest + policy.volume_window + self.policy.alerts.lateness)
        if state.daily:  # a day counts in the baseline until baseline_days + 2 days after it
            gone = date.fromordinal(max(state.daily).toordinal() + policy.baseline_days + 3)
            ends.append(datetime(gone.year, gone.month, gone.day, tzinfo=UTC))
        return max(ends, default=None)

    def _over(self, state: VolumeState, export: AccessEvent) -> bool:
        at = export.timestamp
        return self._window_total(state, at) > self._threshold(state, at)

    def _finding(self, state: VolumeState, export: AccessEvent) -> Finding:
        """One episode over the threshold is one incident: each later export that keeps the
        window over extends it (``Incident``), instead of opening one per alert bucket."""
        headline = self._headline(export, self._threshold(state, export.timestamp))
        window = self.policy.export.volume_window
        incident = self.incident(state.incidents, export.timestamp, window)
        return self.finding(export, f"actor:{export.actor.id}", headline, incident)

    def _window_total(self, state: VolumeState, at: datetime) -> int:
        start = at - self.policy.export.volume_window
        return sum(e.records for e in state.exports if start < e.at <= at)

    def _threshold(self, state: VolumeState, at: datetime) -> float:
        policy = self.policy.export
        today = _day(at)
        days = [date.fromordinal(today.toordinal() - n) for n in range(1, policy.baseline_days + 1)]
        median = statistics.median(state.daily.get(day, 0) for day in days)
        return max(policy.volume_floor, policy.baseline_multiplier * median)

    def _forget_old(self, state: VolumeState, now: datetime) -> None:
        policy = self.policy.export
        horizon = now - policy.volume_window - self.policy.alerts.lateness
        waiting = min((p.event.timestamp for p in state.pending), default=now)
        keep_from = min(horizon, waiting - policy.volume_window)
        state.exports = [e for e in state.exports if e.at > keep_from]
        oldest_day = _day(now).toordinal() - policy.baseline_days - 2
        state.daily = {d: n for d, n in state.daily.items() if d.toordinal() >= oldest_day}
        still = min(now - self.policy.alerts.lateness, waiting)  # a finding may yet extend them
        state.incidents = open_incidents(state.incidents, still, policy.volume_window)

    def _headline(self, export: AccessEvent, threshold: float) -> str:
        """Says "more than" the threshold, not the total: the total seen depends on how many of
        the window's exports had arrived when it was judged, the crossing does not."""
        hours = self.policy.export.volume_window_hours
        return (
            f"{export.actor.role.value} {export.actor.id} exported or downloaded more than "
            f"{threshold:g} patient records within {hours:g} h (this one: {export.action.value} of "
            f"{export.record_count} from practice {export.practice_id}); the threshold is the "
            f"floor or {self.policy.export.baseline_multiplier:g}x their median daily volume"
        )


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()

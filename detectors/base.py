"""What every detector shares: its protocol, findings into alerts, and event-time pending work.

A detector is pure: ``step`` takes the state of one key and an event, ``expire`` takes the state
and the event-time clock; both return the new state and the alerts it produced (one per finding;
``detectors.runner.AlertBook`` folds them into incidents).
Decisions that depend on events which may still arrive (a consent stamped a few seconds after an
access, a window still filling) are queued in the state with a deadline and taken by ``expire``
once the clock passes it: the outcome then depends only on the events, not on their arrival
order, so a replay, a restart or the offline runner reach the same alerts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from detectors.alerts import Alert, Finding, Severity, single_alert
from detectors.models import AccessEvent, Action
from detectors.policy import Policy

S = TypeVar("S", bound="DetectorState")

LIFECYCLE = {
    Action.LOGIN,
    Action.LOGOUT,
    Action.SESSION_START,
    Action.SESSION_END,
    Action.CONSENT_GRANTED,
    Action.CONSENT_REVOKED,
}


class Pending(BaseModel):
    """An event whose decision waits until the event-time clock reaches ``due``."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # shared by state snapshots

    due: AwareDatetime
    event: AccessEvent


class DetectorState(BaseModel):
    """Pending decisions; subclasses add what their rule needs to remember."""

    model_config = ConfigDict(extra="forbid")

    pending: list[Pending] = Field(default_factory=list)

    def next_due(self) -> datetime | None:
        return min((p.due for p in self.pending), default=None)

    def snapshot(self: S) -> S:
        """A copy a detector may change freely, leaving this one as it is (copy on write).

        Containers and mutable models are copied; what cannot change (strings, numbers, times,
        frozen models such as the events waiting in ``pending``) is shared: a deep copy of
        those cost more than the detectors themselves.
        """
        copied: S = _copied(self)
        return copied

    def is_idle(self) -> bool:
        """Nothing left to decide or remember: the key's state may be dropped.

        Every state's fields default to None or an empty container, so "as a fresh state" is
        "every field None or empty": checked directly, not by building and comparing models
        (this runs after every step)."""
        return all(
            value is None or (type(value) in _CONTAINERS and not value)
            for value in self.__dict__.values()
        )


_CONTAINERS = (list, dict, set)


def _copied(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [_copied(item) for item in value]
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is set:
        return {_copied(item) for item in value}
    if isinstance(value, BaseModel) and not value.model_config.get("frozen"):
        return _copied_model(value)
    return value


def _copied_model(model: BaseModel) -> BaseModel:
    """A pydantic model copied field by field, without ``model_copy``'s generic machinery (it
    cost more than the detectors). States have no extra fields and no private attributes."""
    kind = type(model)
    copy = kind.__new__(kind)
    setattr_ = object.__setattr__
    setattr_(copy, "__dict__", {name: _copied(v) for name, v in model.__dict__.items()})
    setattr_(copy, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    setattr_(copy, "__pydantic_extra__", model.__pydantic_extra__)
    setattr_(copy, "__pydantic_private__", model.__pydantic_private__)
    return copy


class Detector(Protocol[S]):
    rule_id: str

    @property
    def name(self) -> str:
        """Unique among detectors (two may share a rule_id)."""
        ...

    def key(self, event: AccessEvent) -> str | None: ...
    def initial(self) -> S: ...
    def step(self, state: S, event: AccessEvent) -> tuple[S, list[Alert]]: ...
    def expire(self, state: S, now: datetime) -> tuple[S, list[Alert]]: ...


class BaseDetector:
    """Findings into alerts, severity policy and the pending queue, for the rules to build on."""

    rule_id: str = ""
    default_severity: Severity = Severity.HIGH

    def __init__(self, policy: Policy):
        self.policy = policy

    @property
    def name(self) -> str:
        return self.rule_id

    @property
    def severity(self) -> Severity:
        return self.policy.severity.get(self.rule_id, self.default_severity)

    def finding(self, event: AccessEvent, group: str, headline: str) -> Finding:
        return Finding(self.rule_id, self.severity, event, group, headline)

    def report(self, findings: Iterable[Finding]) -> list[Alert]:
        window = self.policy.alerts.group_window
        return [single_alert(finding, window) for finding in findings]

    def wait(self, state: DetectorState, event: AccessEvent, delay: timedelta) -> None:
        due = event.timestamp + delay + self.policy.alerts.lateness
        state.pending.append(Pending(due=due, event=event))

    def due(self, state: DetectorState, now: datetime) -> list[AccessEvent]:
        """Pending events whose time has come, oldest first; removed from the state."""
        ready = [p for p in state.pending if p.due <= now]
        if ready:
            state.pending = [p for p in state.pending if p.due > now]
        return [p.event for p in sorted(ready, key=lambda p: (p.event.timestamp, p.event.event_id))]


def touches_patient_data(event: AccessEvent) -> bool:
    """The contract's test: an action with a patient or a data category, not a lifecycle step."""
    return event.action not in LIFECYCLE and (
        event.patient_id is not None or event.data_category is not None
    )

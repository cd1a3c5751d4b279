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

from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from enum import Enum
from functools import cache
from types import UnionType
from typing import Any, Protocol, TypeVar, Union, get_args, get_origin

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from detectors.alerts import Alert, Finding, Severity, bucket_start, single_alert
from detectors.exceptions import Exceptions
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


class Incident(BaseModel):
    """An incident of a sliding-window rule that is still going on.

    Once a window crosses its threshold, every later event in it crosses again; grouping those
    findings in fixed buckets opened a new incident every ``group_minutes`` for one episode.
    Instead, a finding that comes within one window of the incident's findings extends it (same
    id), until a whole window passes without one; the next finding then opens a new incident.

    The id is anchored on the alert bucket of the incident's first finding, as fixed-bucket
    rules are: findings that arrive out of order within one bucket give the same incident
    whatever their order. An episode whose first findings arrive out of order across a bucket
    boundary, or further apart than a window, can end up as two incidents (none of the evidence
    is lost); in-order streams and the offline runner, which sorts, always give one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)  # shared by state snapshots

    anchor: AwareDatetime  # names the incident (its alert id): its first finding's bucket
    first: AwareDatetime
    last: AwareDatetime


def extend_incident(
    incidents: list[Incident], at: datetime, window: timedelta, bucket: timedelta
) -> datetime:
    """The anchor of the incident a finding at ``at`` extends, opening one if none is within a
    window of it. Changes ``incidents`` (the caller's own state, already a snapshot)."""
    for number, incident in enumerate(incidents):
        if incident.first - window <= at <= incident.last + window:
            incidents[number] = Incident(
                anchor=incident.anchor, first=min(incident.first, at), last=max(incident.last, at)
            )
            return incident.anchor
    anchor = bucket_start(at, bucket)
    incidents.append(Incident(anchor=anchor, first=at, last=at))
    return anchor


def open_incidents(incidents: list[Incident], now: datetime, window: timedelta) -> list[Incident]:
    """The incidents still open at ``now``: a finding may still extend them."""
    return [incident for incident in incidents if incident.last + window > now]


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
        those cost more than the detectors themselves. How to copy each field is read once per
        state class from its annotations (``_copier``), so a snapshot is a few C-level copies.
        """
        kind = type(self)
        copy = kind.__new__(kind)
        setattr_ = object.__setattr__
        setattr_(copy, "__dict__", _copier(kind)(self.__dict__))
        setattr_(copy, "__pydantic_fields_set__", set(self.__pydantic_fields_set__))
        setattr_(copy, "__pydantic_extra__", None)  # extra="forbid"
        setattr_(copy, "__pydantic_private__", None)  # states keep no private attributes
        return copy

    def is_idle(self) -> bool:
        """Nothing left to decide or remember: the key's state may be dropped.

        Every state's fields default to None or an empty container, so "as a fresh state" is
        "every field None or empty": checked directly, not by building and comparing models
        (this runs after every step)."""
        return _is_idle(type(self))(self.__dict__)


_CONTAINERS = (list, dict, set)
Copy = Callable[[Any], Any]


def _share(value: Any) -> Any:
    return value


def _copied(value: Any) -> Any:
    """The generic copy, for a field whose annotation ``_copy_for`` does not recognise."""
    kind = type(value)
    if kind is list:
        return [_copied(item) for item in value]
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is set:
        return {_copied(item) for item in value}
    if isinstance(value, DetectorState):
        return value.snapshot()
    if isinstance(value, BaseModel) and not value.model_config.get("frozen"):
        return value.model_copy(deep=True)
    return value


def _immutable(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return all(_immutable(arg) for arg in get_args(annotation))
    if not isinstance(annotation, type):
        return False
    if issubclass(annotation, BaseModel):
        return bool(annotation.model_config.get("frozen"))
    return annotation is type(None) or issubclass(annotation, _IMMUTABLE)


_IMMUTABLE = (str, int, float, bool, date, datetime, AwareDatetime, Enum)  # date: datetime too


def _copy_for(annotation: Any) -> Copy:
    """How to copy a value of this type: share it, copy the container, or the generic way."""
    if _immutable(annotation):
        return _share
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, set) and _immutable(args[0]):
        return origin  # type: ignore[no-any-return]
    if origin is dict and _immutable(args[0]):
        if _immutable(args[1]):
            return dict
        inner = _copy_for(args[1])
        if inner is not _copied:
            return lambda value: {key: inner(item) for key, item in value.items()}
    return _copied


@cache
def _is_idle(kind: type[DetectorState]) -> Callable[[dict[str, Any]], bool]:
    """Every field None or an empty container: containers by annotation, the rest by None."""
    names = list(kind.model_fields)

    def idle(values: dict[str, Any]) -> bool:
        for name in names:
            value = values[name]
            if value is not None and (type(value) not in _CONTAINERS or value):
                return False
        return True

    return idle


@cache
def _copier(kind: type[DetectorState]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A state class's field values into a copy of them, each field copied as its type needs."""
    plan = [(name, _copy_for(field.annotation)) for name, field in kind.model_fields.items()]
    copied = [(name, copy) for name, copy in plan if copy is not _share]

    def copy_values(values: dict[str, Any]) -> dict[str, Any]:
        fresh = dict(values)
        for name, copy in copied:
            fresh[name] = copy(fresh[name])
        return fresh

    return copy_values


class Detector(Protocol[S]):
    rule_id: str
    # Judges each event alone, never keeping state or pending decisions: the runner then
    # skips reading and writing its state (tests/unit/detectors check the claim).
    stateless: bool

    @property
    def name(self) -> str:
        """Unique among detectors (two may share a rule_id)."""
        ...

    def key(self, event: AccessEvent) -> str | None: ...
    def initial(self) -> S: ...
    def forget_at(self, state: S) -> datetime | None:
        """The event time from which ``expire`` drops all the state remembers (None: it
        remembers nothing beyond its pending decisions)."""
        ...

    def step(self, state: S, event: AccessEvent) -> tuple[S, list[Alert]]: ...
    def expire(self, state: S, now: datetime) -> tuple[S, list[Alert]]: ...


class BaseDetector:
    """Findings into alerts, severity policy and the pending queue, for the rules to build on."""

    rule_id: str = ""
    default_severity: Severity = Severity.HIGH
    stateless: bool = False

    def __init__(self, policy: Policy, exceptions: Exceptions | None = None):
        self.policy = policy
        self.exceptions = exceptions if exceptions is not None else Exceptions()

    @property
    def name(self) -> str:
        return self.rule_id

    @property
    def severity(self) -> Severity:
        return self.policy.severity.get(self.rule_id, self.default_severity)

    def forget_at(self, state: Any) -> datetime | None:
        return None

    def finding(
        self, event: AccessEvent, group: str, headline: str, incident: datetime | None = None
    ) -> Finding:
        return Finding(self.rule_id, self.severity, event, group, headline, incident)

    def incident(self, incidents: list[Incident], at: datetime, window: timedelta) -> datetime:
        """For sliding-window rules: the incident a finding at ``at`` extends (``Incident``)."""
        return extend_incident(incidents, at, window, self.policy.alerts.group_window)

    def report(self, findings: Iterable[Finding]) -> list[Alert]:
        """One alert per finding, but none for a finding an analyst's exception covers."""
        window = self.policy.alerts.group_window
        findings = list(findings)
        alerts = [single_alert(finding, window) for finding in findings]
        if not self.exceptions.by_id:
            return alerts
        return [
            alert
            for finding, alert in zip(findings, alerts, strict=True)
            if self.exceptions.silences(finding, alert.alert_id) is None
        ]

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

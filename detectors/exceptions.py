"""Exceptions: an analyst's decision that some findings are expected, as data the detectors apply.

A false positive ("the secretary covers for the practitioner on Mondays") becomes an exception:
one rule, a scope (actor, practice, destination, data category, or one incident), a period of
event time, a mandatory reason and who approved it. A finding inside an exception's scope and
period raises no alert; nothing else changes: the access stays in the history and in reports,
and every other rule still judges it.

Exceptions are judged against the finding's event time, not the wall clock, so a replay of past
days and ``guetteur detect`` over the same events and the same exceptions give the same alerts
as the live worker did. Where they come from (a compacted Kafka topic, a file) is
``streams.exceptions``' business; here they are values.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from detectors.alerts import Finding
from detectors.models import DataCategory

SCOPES = ("actor_id", "practice_id", "destination", "data_category", "alert_id")


class DetectionException(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exception_id: str = Field(min_length=1, max_length=64)
    rule_id: str
    actor_id: str | None = None
    practice_id: str | None = None
    destination: str | None = None
    data_category: DataCategory | None = None
    alert_id: str | None = None  # one incident only: a snooze
    starts: AwareDatetime  # event time from which it applies
    expires: AwareDatetime  # event time from which it no longer does; mandatory
    reason: str = Field(min_length=3, max_length=1000)
    approved_by: str = Field(min_length=1)
    created_at: AwareDatetime
    from_alert: str | None = None  # the false positive it was made from

    @model_validator(mode="after")
    def _scoped_and_limited(self) -> DetectionException:
        if not any(getattr(self, scope) is not None for scope in SCOPES):
            raise ValueError(
                f"an exception needs a scope besides its rule: one of {', '.join(SCOPES)}"
            )
        if self.expires <= self.starts:
            raise ValueError("expires must be after starts")
        return self

    def covers(self, finding: Finding, alert_id: str) -> bool:
        """Whether this exception silences ``finding`` (whose alert would be ``alert_id``)."""
        event = finding.event
        return (
            finding.rule_id == self.rule_id
            and self.starts <= event.timestamp < self.expires
            and (self.actor_id is None or event.actor.id == self.actor_id)
            and (self.practice_id is None or event.practice_id == self.practice_id)
            and (self.destination is None or event.destination == self.destination)
            and (self.data_category is None or event.data_category == self.data_category)
            and (self.alert_id is None or alert_id == self.alert_id)
        )

    def active(self, now: datetime) -> bool:
        return self.expires > now


class Exceptions:
    """The current set, by id; replaced or extended as the source changes (the live worker
    reads a topic; ``detect`` a file). Detectors only ask ``silences``."""

    def __init__(self, exceptions: Iterable[DetectionException] = ()) -> None:
        self.by_id: dict[str, DetectionException] = {e.exception_id: e for e in exceptions}
        self._by_rule: dict[str, list[DetectionException]] = {}
        self._index()

    def put(self, exception: DetectionException) -> None:
        self.by_id[exception.exception_id] = exception
        self._index()

    def remove(self, exception_id: str) -> None:
        self.by_id.pop(exception_id, None)
        self._index()

    def silences(self, finding: Finding, alert_id: str) -> DetectionException | None:
        for exception in self._by_rule.get(finding.rule_id, ()):
            if exception.covers(finding, alert_id):
                return exception
        return None

    def _index(self) -> None:
        by_rule: dict[str, list[DetectionException]] = {}
        for exception in self.by_id.values():
            by_rule.setdefault(exception.rule_id, []).append(exception)
        self._by_rule = by_rule

    def __len__(self) -> int:
        return len(self.by_id)

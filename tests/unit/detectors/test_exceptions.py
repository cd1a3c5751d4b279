"""Exceptions as data (issue 13): a covered finding raises nothing, within its scope and its
period of event time only; the rest of detection is untouched."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from detectors.exceptions import DetectionException, Exceptions
from detectors.policy import Policy
from detectors.registry import all_detectors
from detectors.runner import detect
from tests.unit.detectors.helpers import at, ev

SECRETARY = {"id": "sec-lea", "role": "secretary"}
ROLE = "access.role_not_permitted"


def _exception(**fields: Any) -> DetectionException:
    values = {
        "exception_id": "exc-1",
        "rule_id": ROLE,
        "actor_id": "sec-lea",
        "starts": at(days=-1),
        "expires": at(days=7),
        "reason": "covers for the practitioner on Mondays",
        "approved_by": "ana",
        "created_at": at(days=-1),
        **fields,
    }
    return DetectionException.model_validate(values)


def _reads(when: str, practice: str = "prac-1", actor: dict[str, str] = SECRETARY) -> Any:
    return ev("view", actor, when, data_category="medical", patient_id="P-1", practice_id=practice)


def _rules(events: list[Any], exceptions: Exceptions) -> list[str]:
    return sorted(a.rule_id for a in detect(events, all_detectors(Policy(), exceptions)))


def test_a_covered_finding_raises_nothing_and_the_rest_still_fires() -> None:
    events = [_reads(at(0)), _reads(at(60), actor={"id": "sec-max", "role": "secretary"})]
    without = detect(events, all_detectors(Policy()))
    assert sorted(str(a.actor_id) for a in without if a.rule_id == ROLE) == ["sec-lea", "sec-max"]
    with_it = detect(events, all_detectors(Policy(), Exceptions([_exception()])))
    assert [a.actor_id for a in with_it if a.rule_id == ROLE] == ["sec-max"]
    others = {a.alert_id for a in without if a.rule_id != ROLE}
    assert others == {a.alert_id for a in with_it if a.rule_id != ROLE}


@pytest.mark.parametrize(
    ("fields", "silenced"),
    [
        ({}, True),
        ({"practice_id": "prac-1"}, True),
        ({"practice_id": "prac-2"}, False),  # another practice: out of scope
        ({"data_category": "billing"}, False),
        ({"rule_id": "support.no_consent"}, False),  # another rule
        ({"starts": at(days=1)}, False),  # not yet in force at the access's event time
        ({"expires": at(-60)}, False),  # expired before it
    ],
)
def test_an_exception_covers_its_scope_and_period_only(
    fields: dict[str, Any], silenced: bool
) -> None:
    exceptions = Exceptions([_exception(**fields)])
    assert (ROLE not in _rules([_reads(at(0))], exceptions)) is silenced


def test_a_snooze_covers_one_incident() -> None:
    [alert] = [a for a in detect([_reads(at(0))], all_detectors(Policy())) if a.rule_id == ROLE]
    snooze = Exceptions([_exception(actor_id=None, alert_id=alert.alert_id)])
    assert ROLE not in _rules([_reads(at(0))], snooze)
    assert ROLE in _rules([_reads(at(days=2))], snooze)  # a later incident is not snoozed


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"actor_id": None}, "needs a scope"),
        ({"expires": at(days=-2)}, "expires must be after starts"),
        ({"reason": ""}, "reason"),
        ({"expires": None}, "expires"),
    ],
)
def test_an_exception_is_scoped_limited_and_explained(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        _exception(**fields)


def test_exceptions_apply_live_to_detectors_already_built() -> None:
    """The worker builds its detectors once; an exception added later applies to them."""
    exceptions = Exceptions()
    detectors = all_detectors(Policy(), exceptions)
    assert ROLE in sorted(a.rule_id for a in detect([_reads(at(0))], detectors))
    exceptions.put(_exception())
    assert ROLE not in sorted(a.rule_id for a in detect([_reads(at(0))], detectors))
    exceptions.remove("exc-1")
    assert ROLE in sorted(a.rule_id for a in detect([_reads(at(0))], detectors))


def test_times_are_event_times() -> None:
    exception = _exception()
    assert isinstance(exception.expires, datetime) and exception.active(exception.starts)

"""A detector that raises loses that event for that detector, and nothing else.

Before: a detector that changed its state in place and then raised left the half-changed state
behind, and one event dated year 1 made ``export.unusual_volume`` raise on every expiry pass,
so the detect agent crash-looped and detection stopped for good (issue 11).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from detectors.alerts import Alert
from detectors.base import BaseDetector, DetectorState
from detectors.models import AccessEvent
from detectors.policy import Policy, load_policy
from detectors.registry import all_detectors
from detectors.runner import Runner, state_key
from streams.demo.simulate import DEMO_POLICY, simulate
from tests.unit.detectors.helpers import DOCTOR, at, ev

POISON = "poison"


class CountingState(DetectorState):
    seen: list[str] = Field(default_factory=list)


class Fragile(BaseDetector):
    """Counts events per actor; raises half-way through on an event whose id says poison,
    both when stepping it and when its decision comes due."""

    rule_id = "test.fragile"

    def key(self, event: AccessEvent) -> str | None:
        return f"actor:{event.actor.id}"

    def initial(self) -> CountingState:
        return CountingState()

    def step(self, state: CountingState, event: AccessEvent) -> tuple[CountingState, list[Alert]]:
        state.seen.append(event.event_id)
        if event.event_id.startswith(POISON + "-step"):
            raise ValueError("boom in step, after changing the state")
        self.wait(state, event, timedelta(0))
        return state, []

    def expire(self, state: CountingState, now: datetime) -> tuple[CountingState, list[Alert]]:
        findings = []
        for event in self.due(state, now):
            state.seen.append(f"decided:{event.event_id}")
            if event.event_id.startswith(POISON + "-expire"):
                raise OverflowError("boom in expire")
            findings.append(self.finding(event, f"actor:{event.actor.id}", "decided"))
        return state, self.report(findings)


def _runner() -> tuple[Runner, list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    detectors: dict[str, Any] = {"fragile": Fragile(Policy())}
    runner = Runner(detectors, on_error=lambda name, event_id, exc: errors.append((name, event_id)))
    return runner, errors


def _view(event_id: str, seconds: float) -> AccessEvent:
    return ev("view", DOCTOR, at(seconds), event_id=event_id)


def test_a_raising_step_leaves_the_state_exactly_as_it_was() -> None:
    runner, errors = _runner()
    runner.step("fragile", "actor:dr-martin", _view("ok-1", 0))
    stored = state_key("fragile", "actor:dr-martin")
    before = runner.states[stored].model_dump()

    assert runner.step("fragile", "actor:dr-martin", _view(POISON + "-step", 1)) == []
    assert runner.states[stored].model_dump() == before
    assert errors == [("fragile", POISON + "-step")]

    runner.step("fragile", "actor:dr-martin", _view("ok-2", 2))
    after = runner.states[stored]
    # The next events are detected.
    assert isinstance(after, CountingState) and after.seen == ["ok-1", "ok-2"]


def test_a_decision_that_raises_is_dropped_alone_and_the_others_are_taken() -> None:
    runner, errors = _runner()
    for event_id, seconds in [("ok-1", 0), (POISON + "-expire", 1), ("ok-2", 2)]:
        runner.step("fragile", "actor:dr-martin", _view(event_id, seconds))
    alerts = runner.advance(_view("clock", 3600).timestamp)
    assert errors == [("fragile", POISON + "-expire")]
    assert sorted(e for a in alerts for e in a.event_ids) == ["ok-1", "ok-2"]
    # Nothing left to decide: the poisoned decision does not come back at every tick.
    assert runner.advance(_view("clock", 7200).timestamp) == []
    assert errors == [("fragile", POISON + "-expire")]


def test_real_detectors_survive_a_year_one_event_and_keep_detecting() -> None:
    """Ingest refuses such timestamps now; the detectors must not depend on it."""
    detectors = all_detectors(Policy())
    errors: list[str] = []
    runner = Runner(detectors, on_error=lambda name, event_id, exc: errors.append(name))
    ancient = AccessEvent.model_validate(
        {
            "event_id": "year-1",
            "timestamp": "0001-01-01T00:00:00+14:00",
            "source": "export_service",
            "action": "export",
            "actor": {"id": "svc-x", "role": "service"},
            "record_count": 10,
            "destination": "usb",
        },
        strict=False,
    )
    for name, key in runner.routes(ancient):
        runner.step(name, key, ancient)
    big = ev("export", DOCTOR, at(10), record_count=5000, destination="usb", event_id="big")
    alerts = runner.feed(big) + runner.finish()
    assert "export.unusual_volume" in {a.rule_id for a in alerts}
    assert "export.unapproved_destination" in {a.rule_id for a in alerts}


class Unkeyable(Fragile):
    rule_id = "test.unkeyable"

    def key(self, event: AccessEvent) -> str | None:
        if event.event_id.startswith(POISON):
            raise KeyError("boom in key")
        return super().key(event)


def test_a_detector_whose_key_raises_misses_that_event_and_the_others_route_it() -> None:
    errors: list[tuple[str, str]] = []
    detectors: dict[str, Any] = {"unkeyable": Unkeyable(Policy()), "fragile": Fragile(Policy())}
    runner = Runner(detectors, on_error=lambda name, event_id, exc: errors.append((name, event_id)))
    assert runner.routes(_view(POISON + "-key", 0)) == [("fragile", "actor:dr-martin")]
    assert errors == [("unkeyable", POISON + "-key")]
    assert [name for name, _ in runner.routes(_view("ok", 1))] == ["unkeyable", "fragile"]


class Forgetful(Fragile):
    """Claims to judge each event alone, yet keeps state: a bug the runner must not hide."""

    rule_id = "test.forgetful"
    stateless = True


def test_a_detector_wrongly_declared_stateless_is_reported_not_trusted() -> None:
    errors: list[tuple[str, str]] = []
    runner = Runner(
        {"forgetful": Forgetful(Policy())},
        on_error=lambda name, event_id, exc: errors.append((name, event_id)),
    )
    runner.step("forgetful", "actor:dr-martin", _view("kept-1", 0))
    runner.step("forgetful", "actor:dr-martin", _view("kept-2", 1))
    assert errors == [("forgetful", "kept-1"), ("forgetful", "kept-2")]
    assert not runner.states  # nothing stored for a detector whose states are never read
    assert runner._fresh["forgetful"].is_idle()  # the lent fresh state was replaced


def test_the_detectors_declared_stateless_keep_nothing_on_a_simulated_month() -> None:
    errors: list[tuple[str, str, str]] = []
    detectors = all_detectors(load_policy(DEMO_POLICY))
    assert {name for name, d in detectors.items() if d.stateless} >= {
        "access.role_not_permitted",
        "support.non_view_action",
    }
    runner = Runner(detectors, on_error=lambda n, e, exc: errors.append((n, e, repr(exc))))
    for raw in simulate(practices=4, days=30, seed=11).events:
        runner.feed(AccessEvent.model_validate(raw, strict=False))
    runner.finish()
    assert errors == []


def test_a_snapshot_shares_nothing_a_detector_could_change() -> None:
    """Every state class of the registry: each container of the copy changed, deep down,
    and the original is exactly as it was (the copy plan is read from annotations)."""
    runner = Runner(all_detectors(load_policy(DEMO_POLICY)))
    kinds: set[type] = set()
    for number, raw in enumerate(simulate(practices=4, days=3, seed=5).events):
        runner.feed(AccessEvent.model_validate(raw, strict=False))
        if number % 500:
            continue
        for state in list(runner.states.values()):
            before = state.model_dump()
            copy = state.snapshot()
            assert type(copy) is type(state) and copy.model_dump() == before
            _scribble(copy)
            assert state.model_dump() == before, type(state).__name__
            kinds.add(type(state))
    assert len(kinds) >= 4  # care, session, volume, hri, linkage states were all exercised


def _scribble(value: Any) -> None:
    """Change every mutable container reachable from ``value``, in place."""
    if isinstance(value, DetectorState):
        for name in type(value).model_fields:
            _scribble(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            _scribble(item)
        value.append(object())
    elif isinstance(value, dict):
        for item in value.values():
            _scribble(item)
        value[object()] = object()
    elif isinstance(value, set):
        value.add(object())

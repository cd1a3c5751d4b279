"""The offline runner streams: a bounded reorder window instead of sorting the whole file."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import timedelta

from detectors.alerts import Alert
from detectors.models import AccessEvent
from detectors.policy import load_policy
from detectors.registry import all_detectors
from detectors.runner import detect, detect_stream
from streams.demo.simulate import DEMO_POLICY, simulate


def _events() -> list[AccessEvent]:
    return [
        AccessEvent.model_validate_json(json.dumps(e))
        for e in simulate(practices=3, days=2, seed=7).events
    ]


def _ids(alerts: list[Alert]) -> list[tuple[str, tuple[str, ...], str]]:
    return [(a.alert_id, tuple(a.event_ids), a.summary) for a in alerts]


def test_a_file_shuffled_within_the_window_gives_the_alerts_of_the_sorted_file() -> None:
    events = _events()
    detectors = all_detectors(load_policy(DEMO_POLICY))
    expected = detect(events, detectors)
    assert expected
    # Each event moved by up to 5 minutes of event time: out of order, within the window.
    rng = random.Random(3)
    jittered = sorted(events, key=lambda e: e.timestamp + timedelta(seconds=rng.uniform(-300, 300)))
    assert jittered != events
    found = detect_stream(jittered, all_detectors(load_policy(DEMO_POLICY)), timedelta(minutes=10))
    assert _ids(found) == _ids(expected)


def test_only_the_reorder_window_is_held_in_memory() -> None:
    """When an event is pulled from the file, every event a window older than the newest one
    seen has already gone through the detectors: what is held is bounded by the window, not by
    the file."""
    events = _events()
    detectors = all_detectors(load_policy(DEMO_POLICY))
    fed: list[AccessEvent] = []
    first = next(iter(detectors))
    keyed = detectors[first].key

    def spy(event: AccessEvent) -> str | None:
        fed.append(event)
        return keyed(event)

    detectors[first].key = spy  # type: ignore[method-assign]
    window = timedelta(minutes=10)

    def source() -> Iterator[AccessEvent]:
        for previous, event in zip([None, *events], events, strict=False):
            if previous is not None:  # what the runner has seen so far ends at ``previous``
                behind = [e for e in events if e.timestamp <= previous.timestamp - window]
                assert len(fed) >= len(behind)
            yield event

    detect_stream(source(), detectors, window)
    assert len(fed) == len(events)


def test_keys_never_seen_again_are_forgotten_once_their_windows_have_passed() -> None:
    """Before: a state that remembered something (an appointment, a view, a day's export
    volume, a session) but had nothing pending was never looked at again, so a patient seen
    once was kept for ever: memory grew with the number of patients, not with the windows."""
    from detectors.runner import Runner

    runner = Runner(all_detectors(load_policy(DEMO_POLICY)))
    events = sorted(_events(), key=lambda e: e.timestamp)
    for event in events:
        runner.feed(event)
    remembered = {key.split("|")[0] for key in runner.states}
    assert {"access.no_care_relationship", "support.no_consent"} <= remembered
    runner.advance(events[-1].timestamp + timedelta(days=45))  # past every window, no event
    assert dict(runner.states) == {}
    assert runner.waiting() == 0


def test_forgetting_changes_no_alert() -> None:
    """The same alerts whether the clock also wakes keys up to forget (the runner) or not."""
    events = _events()
    detectors = all_detectors(load_policy(DEMO_POLICY))
    for detector in detectors.values():  # as before: nothing but pending decisions wakes
        detector.forget_at = lambda state: None  # type: ignore[method-assign]
    before = detect(events, detectors)
    assert before
    assert _ids(detect(events, all_detectors(load_policy(DEMO_POLICY)))) == _ids(before)

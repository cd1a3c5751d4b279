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

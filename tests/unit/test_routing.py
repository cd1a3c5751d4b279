"""Forwarding to detection: one message per detect partition, each key where its state is."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from faust.serializers.codecs import dumps as faust_dumps

from detectors.models import AccessEvent
from detectors.policy import load_policy
from detectors.registry import all_detectors
from detectors.runner import log_error, routes, state_key
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.detection import routing

T = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
PARTITIONS = 4


def _events() -> list[AccessEvent]:
    return [
        AccessEvent.model_validate_json(json.dumps(e))
        for e in simulate(practices=3, days=1, seed=7).events
    ]


def _detectors() -> dict[str, Any]:
    return all_detectors(load_policy(DEMO_POLICY))


def test_every_route_arrives_once_on_the_partition_of_its_state() -> None:
    events, detectors = _events(), _detectors()
    out = routing.forward(events, detectors, PARTITIONS, {0: T}, log_error)
    assert sorted(out) == list(range(PARTITIONS))  # every partition gets its progress
    received = []
    for partition, messages in out.items():
        for raw in messages:
            forwarded = routing.decode(raw)
            for index, name, key in forwarded.routes:
                assert routing.partition_of(state_key(name, key), PARTITIONS) == partition
                received.append((forwarded.events[index].event_id, name, key))
            # Each event travels once per partition, whatever the number of its routes there.
            ids = [e.event_id for e in forwarded.events]
            assert len(ids) == len(set(ids))
    expected = [(e.event_id, n, k) for e in events for n, k in routes(detectors, e, log_error)]
    assert sorted(received) == sorted(expected)
    assert len(expected) > len(events)  # events do go to several detectors


def test_the_progress_rides_on_each_partitions_last_message() -> None:
    out = routing.forward([], _detectors(), PARTITIONS, {0: T, 1: T}, log_error)
    for messages in out.values():
        [only] = messages
        assert routing.decode(only).progress == {0: T, 1: T}
        assert routing.decode(only).events == []


def test_a_big_batch_is_cut_into_messages_under_the_limit(monkeypatch: Any) -> None:
    monkeypatch.setattr(routing, "MAX_MESSAGE_BYTES", 20_000)
    events = _events()
    out = routing.forward(events, _detectors(), PARTITIONS, {0: T}, log_error)
    assert any(len(messages) > 1 for messages in out.values())
    for messages in out.values():
        assert all(len(raw) < 2 * 20_000 for raw in messages)
        decoded = [routing.decode(raw) for raw in messages]
        assert [d.progress for d in decoded[:-1]] == [{}] * (len(decoded) - 1)
        assert decoded[-1].progress == {0: T}


def test_the_producer_partitioner_places_table_keys_where_forwarding_sends_them() -> None:
    for key in ["support.no_consent|session:prac-1/rs-1", "actor:é-accent", "a" * 300]:
        raw = faust_dumps("json", key)
        assert routing.key_partitioner(raw, list(range(PARTITIONS)), None) == (
            routing.partition_of(key, PARTITIONS)
        )


def test_alert_parts_go_to_their_incidents_partition() -> None:
    from detectors.runner import detect

    alerts = detect(_events(), _detectors())
    assert alerts
    parts = routing.alert_parts(alerts, PARTITIONS)
    back = {p: routing.decode_alert_parts(raw) for p, raw in parts.items()}
    assert sorted(a.alert_id for found in back.values() for a in found) == sorted(
        a.alert_id for a in alerts
    )
    for partition, found in back.items():
        assert all(routing.partition_of(a.alert_id, PARTITIONS) == partition for a in found)

"""Streaming detection on the real stack: a simulated day with injected incidents becomes
incidents in the alerts index and on the alerts topic, identical to the offline runner's."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from detectors.policy import load_policy
from detectors.registry import RULE_IDS, all_detectors
from detectors.runner import detect
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.elastic import sync_client
from streams.keys import Key
from streams.minimise import protected
from streams.producer import publish
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.conftest import TEST_KEY
from tests.helpers import stored_alerts

pytestmark = pytest.mark.integration

ENV = {"GUETTEUR_POLICY_FILE": str(DEMO_POLICY), "GUETTEUR_KAFKA_SESSION_TIMEOUT": "8"}


def offline(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pseudonymizer = Pseudonymizer(Key("test", TEST_KEY.encode()))
    policy = load_policy(DEMO_POLICY)
    alerts = detect(protected(events, policy, pseudonymizer), all_detectors(policy))
    return {a.alert_id: a.model_dump(mode="json") for a in alerts}


def wait_for_alerts(
    settings: Settings, expected: dict[str, dict[str, Any]], worker: WorkerProcess, log: Path
) -> dict[str, dict[str, Any]]:
    """Until the index holds every expected incident with all its evidence (or time runs out)."""
    client = sync_client(settings)
    deadline = time.monotonic() + 180
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        assert worker.alive(), log.read_text()[-3000:]
        found = stored_alerts(client, settings)
        complete = all(
            found.get(i, {}).get("event_count") == a["event_count"] for i, a in expected.items()
        )
        if complete and len(found) >= len(expected):
            time.sleep(3)  # anything extra still in flight would show now
            return stored_alerts(client, settings)
        time.sleep(1)
    return found


def comparable(alerts: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        i: (a["rule_id"], a["severity"], a["timestamp"][:19], tuple(a["event_ids"]), a["summary"])
        for i, a in alerts.items()
    }


def test_incidents_stream_into_elasticsearch_as_offline(isolated: Settings, tmp_path: Path) -> None:
    day = simulate(practices=3, days=2, seed=7)
    expected = offline(day.events)
    assert sorted({a["rule_id"] for a in expected.values()}) == sorted(RULE_IDS)
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in day.events])
    log = tmp_path / "worker.log"
    with WorkerProcess(log, env=ENV) as worker:
        found = wait_for_alerts(isolated, expected, worker, log)
    assert comparable(found) == comparable(expected)
    published = _alerts_topic(isolated)
    assert set(published) == set(expected)
    # Alerts name patients by pseudonym only: no raw id in the index or on the topic.
    raw_ids = {e["patient_id"] for e in day.events if "patient_id" in e}
    text = json.dumps([found, published])
    assert [raw for raw in raw_ids if raw in text] == []
    assert any(a["patients"] for a in found.values())


def _alerts_topic(settings: Settings) -> dict[str, dict[str, Any]]:
    """The latest version of each incident published on the alerts topic."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers())
    try:
        partitions = [
            TopicPartition(settings.topic_alerts, p)
            for p in consumer.partitions_for_topic(settings.topic_alerts) or []
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        latest: dict[str, dict[str, Any]] = {}
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    alert = json.loads(record.value)
                    latest[alert["alert_id"]] = alert
        return latest
    finally:
        consumer.close()


def test_a_killed_worker_raises_the_same_incidents_once(isolated: Settings, tmp_path: Path) -> None:
    """SIGKILL mid-stream, restart: the incidents equal an uninterrupted run's (the offline
    runner's), each once in the index."""
    day = simulate(practices=6, days=2, seed=11)
    expected = offline(day.events)
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in day.events])
    client = sync_client(isolated)
    env = {**ENV, "GUETTEUR_BATCH_SIZE": "50"}
    first_log = tmp_path / "first.log"
    first = WorkerProcess(first_log, env=env).start()
    deadline = time.monotonic() + 120
    while not stored_alerts(client, isolated):
        assert first.alive() and time.monotonic() < deadline, first_log.read_text()[-3000:]
        time.sleep(0.2)
    first.kill()
    at_kill = stored_alerts(client, isolated)
    log = tmp_path / "second.log"
    with WorkerProcess(log, env=env) as second:
        found = wait_for_alerts(isolated, expected, second, log)
    assert comparable(at_kill) != comparable(expected)  # the kill did interrupt detection
    assert comparable(found) == comparable(expected)
    client.indices.refresh(index=isolated.alerts_index)
    assert client.count(index=isolated.alerts_index)["count"] == len(expected)

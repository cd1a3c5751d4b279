"""Kafka -> Faust worker -> Elasticsearch: every event produced is found in the history."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, NotFoundError

from streams.demo.simulate import simulate
from streams.elastic import sync_client
from streams.keys import Key
from streams.producer import publish
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.conftest import TEST_KEY
from tests.helpers import stored_history

pytestmark = pytest.mark.integration


def _count(client: Elasticsearch, index: str) -> int:
    try:
        client.indices.refresh(index=index)
        return int(client.count(index=index)["count"])
    except NotFoundError:
        return 0


def _wait_for_count(client: Elasticsearch, index: str, expected: int, worker: WorkerProcess) -> int:
    deadline = time.monotonic() + 120
    count = 0
    while time.monotonic() < deadline and worker.alive():
        count = _count(client, index)
        if count >= expected:
            return count
        time.sleep(1)
    return count


def test_every_valid_event_produced_is_indexed(isolated: Settings, tmp_path: Path) -> None:
    events = simulate(practices=4, days=1, seed=11).events
    malformed = [b"\xff\xfe not utf-8", b"{}", b'{"event_id": "x"}']
    payloads = [json.dumps(e).encode() for e in events]
    ensure_topics(isolated)
    # kafka-python, as any external producer would.
    assert publish(
        isolated, isolated.topic_events, payloads[:100] + malformed + payloads[100:]
    ) == (len(events) + len(malformed))
    client = sync_client(isolated)
    with WorkerProcess(tmp_path / "worker.log") as worker:
        count = _wait_for_count(client, isolated.history_index, len(events), worker)
        assert worker.alive(), (tmp_path / "worker.log").read_text()[-3000:]
    assert count == len(events)
    by_id = stored_history(client, isolated)
    assert set(by_id) == {e["event_id"] for e in events}
    pseudonymizer = Pseudonymizer(Key("test", TEST_KEY.encode()))
    for event in events:
        stored = by_id[event["event_id"]]
        assert stored["event"]["action"] == event["action"]
        assert stored["user"] == {"id": event["actor"]["id"], "roles": [event["actor"]["role"]]}
        if "patient_id" in event:
            expected = pseudonymizer.pseudonym(event["patient_id"])
            assert stored["health"]["patient"]["pseudonym"] == expected
    _assert_no_raw_patient_id(client, isolated.history_index, events, tmp_path / "worker.log")


def _assert_no_raw_patient_id(
    client: Elasticsearch, index: str, events: list[dict[str, Any]], log: Path
) -> None:
    """Scan every stored document and the worker's whole log for any raw patient id."""
    raw_ids = {e["patient_id"] for e in events if "patient_id" in e}
    assert raw_ids
    hits = client.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
    assert len(hits) == len(events)
    stored_text = json.dumps([hit["_source"] for hit in hits])
    log_text = log.read_text()
    leaked = sorted(raw for raw in raw_ids if raw in stored_text or raw in log_text)
    assert leaked == []


def test_replaying_the_same_events_does_not_duplicate(isolated: Settings, tmp_path: Path) -> None:
    events = simulate(practices=1, days=1, seed=3).events
    payloads = [json.dumps(e).encode() for e in events]
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, payloads + payloads)
    client = sync_client(isolated)
    log = tmp_path / "worker.log"
    with WorkerProcess(log) as worker:
        deadline = time.monotonic() + 120
        while _seen_by_worker(log, "batch.size") < 2 * len(events):
            assert worker.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
    # Both copies went through the worker; the second was recognised and not written.
    assert _seen_by_worker(log, "batch.indexed") == len(events)
    assert _seen_by_worker(log, "batch.duplicates") == len(events)
    assert _count(client, isolated.history_index) == len(events)


def _seen_by_worker(log: Path, field: str) -> int:
    """Sum of one of the worker's per-batch counts (its JSON log lines)."""
    if not log.exists():
        return 0
    lines = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return sum(line.get(field, 0) for line in lines)

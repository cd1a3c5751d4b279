"""Kafka -> Faust worker -> Elasticsearch: every event produced is found in the history."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, NotFoundError

from streams.demo.sample import sample_morning
from streams.elastic import sync_client
from streams.producer import publish
from streams.pseudonym import Key
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.conftest import TEST_KEY

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
    events = sample_morning(practices=4, seed=11)
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
    found = client.mget(index=isolated.history_index, ids=[e["event_id"] for e in events])
    assert all(doc["found"] for doc in found["docs"])
    by_id = {doc["_id"]: doc["_source"] for doc in found["docs"]}
    key = Key("test", TEST_KEY.encode())
    for event in events:
        stored = by_id[event["event_id"]]
        assert "patient_id" not in stored
        if "patient_id" in event:
            assert stored["patient_pseudonym"] == key.pseudonym(event["patient_id"])
    _assert_no_raw_patient_id(client, isolated.history_index, events, tmp_path / "worker.log")


def _assert_no_raw_patient_id(
    client: Elasticsearch, index: str, events: list[dict[str, Any]], log: Path
) -> None:
    """Scan every stored document and the worker's whole log for any raw patient id."""
    raw_ids = {e["patient_id"] for e in events if "patient_id" in e}
    assert raw_ids
    hits = client.search(index=index, size=10_000, query={"match_all": {}})["hits"]["hits"]
    stored_text = json.dumps([hit["_source"] for hit in hits])
    log_text = log.read_text()
    leaked = sorted(raw for raw in raw_ids if raw in stored_text or raw in log_text)
    assert leaked == []


def test_replaying_the_same_events_does_not_duplicate(isolated: Settings, tmp_path: Path) -> None:
    events = sample_morning(practices=1, seed=3)
    payloads = [json.dumps(e).encode() for e in events]
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, payloads + payloads)
    client = sync_client(isolated)
    log = tmp_path / "worker.log"
    with WorkerProcess(log) as worker:
        deadline = time.monotonic() + 120
        while _indexed_by_worker(log) < 2 * len(events) and time.monotonic() < deadline:
            assert worker.alive(), log.read_text()[-3000:]
            time.sleep(1)
    assert _indexed_by_worker(log) == 2 * len(events)  # both copies were written...
    assert _count(client, isolated.history_index) == len(events)  # ...onto the same documents


def _indexed_by_worker(log: Path) -> int:
    """Sum of the worker's own per-batch counts (its JSON log lines)."""
    if not log.exists():
        return 0
    lines = (json.loads(line) for line in log.read_text().splitlines() if line.startswith("{"))
    return sum(line.get("batch.indexed", 0) for line in lines)

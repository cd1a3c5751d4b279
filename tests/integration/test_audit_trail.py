"""The history is chained and checkpointed: `guetteur verify` passes on it untouched and reports
an edited record, a deleted one and a deleted newest one; retention purges old months cleanly."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch

from streams.cli.main import cli
from streams.dead_letters import read_all
from streams.elastic import sync_client
from streams.history.chain import chain_fields
from streams.producer import publish
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.helpers import MINIMAL_EVENT, stored_history

pytestmark = pytest.mark.integration

CONTRACT_EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "contract" / "examples.jsonl"


def _event(event_id: str, timestamp: str, practice: str = "prac-1") -> dict[str, Any]:
    return {**MINIMAL_EVENT, "event_id": event_id, "timestamp": timestamp, "practice_id": practice}


def _run_worker(settings: Settings, payloads: list[bytes], expected: int, log: Path) -> None:
    """Publish, let a worker index ``expected`` documents, stop it."""
    ensure_topics(settings)
    publish(settings, settings.topic_events, payloads)
    client = sync_client(settings)
    with WorkerProcess(log, env={"GUETTEUR_CHECKPOINT_SECONDS": "0"}) as worker:
        deadline = time.monotonic() + 120
        while len(stored_history(client, settings)) < expected:
            assert worker.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)  # the checkpoint after the last batch


def _verify(*args: str) -> tuple[int, list[dict[str, Any]]]:
    result = CliRunner().invoke(cli, ["verify", "--json", *args])
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    return result.exit_code, lines


def _findings(lines: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(f["finding"], f["seq"], f["event_id"]) for f in lines if "finding" in f]


def _newest(client: Elasticsearch, settings: Settings) -> dict[str, Any]:
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for source in stored_history(client, settings).values():
        by_partition.setdefault(chain_fields(source)["partition"], []).append(source)
    longest = max(by_partition.values(), key=len)
    return max(longest, key=lambda s: chain_fields(s)["seq"])


def test_verify_reports_an_edit_a_deletion_and_a_truncation(
    isolated: Settings, tmp_path: Path
) -> None:
    examples = [json.loads(line) for line in CONTRACT_EXAMPLES.read_text().splitlines() if line]
    ours = [_event(f"at-{n}", f"2026-11-16T10:{n:02d}:00+01:00") for n in range(30)]
    unindexable = {**_event("at-huge", "2026-11-16T11:00:00+01:00"), "record_count": 2**64}
    payloads = [json.dumps(e).encode() for e in [*examples, *ours[:15], unindexable, *ours[15:]]]
    _run_worker(isolated, payloads, len(examples) + len(ours), tmp_path / "worker.log")

    client = sync_client(isolated)
    history = stored_history(client, isolated)
    assert len(history) == len(examples) + len(ours)  # every contract example fits the mapping
    # Valid for the contract, refused by Elasticsearch: dead-lettered, and the chain closed over it.
    assert [letter.reason for letter in read_all(isolated)] == ["history_refused"]

    code, lines = _verify()
    assert code == 0, lines
    assert lines[-1]["result"] == "ok"
    assert lines[-1]["records_checked"] == len(history)
    assert lines[-1]["signed_records"] >= 1

    edited = history["at-3"]
    index = _index_of(client, isolated, "at-3")
    client.update(index=index, id="at-3", doc={"user": {"id": "someone-else"}}, refresh=True)
    code, lines = _verify()
    assert code == 1
    assert _findings(lines) == [("modified", str(chain_fields(edited)["seq"]), "at-3")]

    deleted = history["at-20"]
    client.delete(index=_index_of(client, isolated, "at-20"), id="at-20", refresh=True)
    code, lines = _verify()
    assert ("deleted", str(chain_fields(deleted)["seq"]), None) in _findings(lines)
    # A window of event time walks only its part of the chain (plus one record each side).
    code, lines = _verify("--from", "2026-11-16T10:25+01:00", "--to", "2026-11-16T10:28+01:00")
    assert code == 0 and 4 <= lines[-1]["records_checked"] < len(history) - 10
    code, lines = _verify("--from", "2026-11-16T10:18+01:00", "--to", "2026-11-16T10:22+01:00")
    assert code == 1 and [f[0] for f in _findings(lines)] == ["deleted"]

    newest = _newest(client, isolated)
    newest_id = newest["event"]["id"]
    client.delete(index=_index_of(client, isolated, newest_id), id=newest_id, refresh=True)
    code, lines = _verify()
    truncated = [f for f in lines if f.get("finding") == "truncated"]
    assert [f["seq"] for f in truncated] == [str(chain_fields(newest)["seq"])]
    assert truncated[0]["partition"] == chain_fields(newest)["partition"]
    assert code == 1 and len(_findings(lines)) == 3


def _index_of(client: Elasticsearch, settings: Settings, event_id: str) -> str:
    hits = client.search(index=settings.history_index, query={"ids": {"values": [event_id]}})
    return str(hits["hits"]["hits"][0]["_index"])


def test_retention_removes_old_months_and_verify_still_passes(
    isolated: Settings, tmp_path: Path
) -> None:
    old = [_event(f"old-{n}", f"2025-01-0{n + 1}T09:00:00+01:00") for n in range(4)]
    new = [_event(f"new-{n}", f"2026-11-1{n}T09:00:00+01:00") for n in range(4)]
    late_old = _event("old-late", "2025-01-20T09:00:00+01:00")
    ordered = [*old, *new[:2], late_old, *new[2:]]  # the late one lands mid-chain
    _run_worker(isolated, [json.dumps(e).encode() for e in ordered], len(ordered), tmp_path / "w")

    runner = CliRunner()
    applied = runner.invoke(cli, ["retention", "apply", "--json", "--now", "2026-11-23T12:00Z"])
    assert applied.exit_code == 0, applied.output
    removed = [json.loads(line) for line in applied.output.splitlines()]
    assert removed == [
        {"index": isolated.history_month_index(2025, 1), "month": "2025-01", "documents": 5}
    ]
    client = sync_client(isolated)
    assert sorted(stored_history(client, isolated)) == sorted(e["event_id"] for e in new)

    code, lines = _verify()
    assert code == 0, lines
    assert lines[-1]["records_checked"] == len(new)

    # A purge is not a licence: deleting a kept record is still reported.
    client.delete(index=_index_of(client, isolated, "new-0"), id="new-0", refresh=True)
    code, lines = _verify()
    assert code == 1
    assert [f["finding"] for f in lines if "finding" in f] == ["deleted"]


def test_a_stopping_worker_signs_its_last_heads(isolated: Settings, tmp_path: Path) -> None:
    """Checkpoints are rare (an hour here); a graceful stop still signs the newest heads, so a
    record deleted afterwards from the end of a chain is reported."""
    ensure_topics(isolated)
    client = sync_client(isolated)
    log = tmp_path / "worker.log"
    first = [_event(f"s-{n}", f"2026-11-16T10:{n:02d}:00+01:00") for n in range(3)]
    later = [_event(f"s-{n}", f"2026-11-16T11:{n:02d}:00+01:00") for n in range(3, 6)]
    with WorkerProcess(log, env={"GUETTEUR_CHECKPOINT_SECONDS": "3600"}) as worker:
        for events in (first, later):
            publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in events])
            deadline = time.monotonic() + 60
            while not set(e["event_id"] for e in events) <= set(stored_history(client, isolated)):
                assert worker.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
    assert "checkpoint written" in log.read_text()
    client.delete(index=_index_of(client, isolated, "s-5"), id="s-5", refresh=True)
    code, lines = _verify()
    assert code == 1
    assert [f["finding"] for f in lines if "finding" in f] == ["truncated"]

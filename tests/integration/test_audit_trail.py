"""The history is chained and checkpointed: `guetteur verify` passes on it untouched and reports
an edited record, a deleted one and a deleted newest one; retention purges old months cleanly."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from elasticsearch import Elasticsearch
from kafka import KafkaAdminClient

from streams.cli.main import cli
from streams.dead_letters import read_all
from streams.elastic import sync_client
from streams.history.chain import canonical, chain_fields
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
    assert ("missing", None, "at-20") in _findings(lines)  # Kafka still holds it: named
    # A window of event time walks only its part of the chain (plus one record each side).
    code, lines = _verify("--from", "2026-11-16T10:25+01:00", "--to", "2026-11-16T10:28+01:00")
    assert code == 0 and 4 <= lines[-1]["records_checked"] < len(history) - 10
    code, lines = _verify("--from", "2026-11-16T10:18+01:00", "--to", "2026-11-16T10:22+01:00")
    assert code == 1 and [f[0] for f in _findings(lines)] == ["deleted", "missing"]

    newest = _newest(client, isolated)
    newest_id = newest["event"]["id"]
    client.delete(index=_index_of(client, isolated, newest_id), id=newest_id, refresh=True)
    code, lines = _verify()
    truncated = [f for f in lines if f.get("finding") == "truncated"]
    assert [f["seq"] for f in truncated] == [str(chain_fields(newest)["seq"])]
    assert truncated[0]["partition"] == chain_fields(newest)["partition"]
    assert code == 1 and len(_findings(lines)) == 4


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
    assert [f["finding"] for f in lines if "finding" in f] == ["deleted", "missing"]


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


def _forged_after(newest: dict[str, Any], event_id: str, **chain: Any) -> dict[str, Any]:
    """A record appended at a chain head by someone with write access to Elasticsearch but no
    key: a correct plain SHA-256 (what the chain used to be), claiming a real record's offset."""
    forged = copy.deepcopy(newest)
    forged["event"]["id"] = event_id
    forged["user"]["id"] = "nobody-was-here"
    fields = forged["guetteur"]["chain"]
    fields.update(seq=fields["seq"] + 1, prev=fields["hash"], **chain)
    fields.pop("key_id")
    fields.pop("hash")
    fields["hash"] = hashlib.sha256(canonical(forged)).hexdigest()
    return forged


def test_verify_catches_what_write_access_to_elasticsearch_allows(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: a forged append, a claimed offset, deleted checkpoints, an insertion and a
    re-ordering are each reported; without the key, verify says what it could not check."""
    anchor_file = tmp_path / "anchors" / "checkpoints.jsonl"
    anchor_file.parent.mkdir()
    monkeypatch.setenv("GUETTEUR_CHECKPOINT_FILE", str(anchor_file))  # the worker's and ours
    events = [_event(f"fa-{n}", f"2026-11-16T10:{n:02d}:00+01:00") for n in range(12)]
    _run_worker(isolated, [json.dumps(e).encode() for e in events], 12, tmp_path / "w1.log")
    client = sync_client(isolated)
    code, lines = _verify()
    assert code == 0, lines
    summary = lines[-1]
    assert summary["kafka_positions_checked"] == 12 and summary["anchored_records"] >= 1
    assert summary["not_checked"] is None

    # A forged append at the head, claiming the head's own Kafka offset.
    newest = _newest(client, isolated)
    forged = _forged_after(newest, "forged-1")
    index = _index_of(client, isolated, newest["event"]["id"])
    client.index(index=index, id="forged-1", document=forged, refresh=True)
    code, lines = _verify()
    found = [f for f in lines if f.get("event_id") == "forged-1"]
    assert code == 1 and {f["finding"] for f in found} == {"inserted"}
    details = " ".join(f["detail"] for f in found)
    assert "plain hash" in details and f"offset {chain_fields(newest)['offset']}" in details

    # The worker chains real events after the forged head: it says so, and verify still sees it.
    later = _event("fa-later", "2026-11-16T11:00:00+01:00")
    log = tmp_path / "w2.log"
    _run_worker(isolated, [json.dumps(later).encode()], 14, log)
    assert "chain head fails its MAC" in log.read_text()
    code, lines = _verify()
    assert code == 1 and any(f.get("event_id") == "forged-1" for f in lines)
    client.delete(index=index, id="forged-1", refresh=True)

    # Every checkpoint deleted from the index: the Kafka anchor still has them.
    client.indices.delete(index=isolated.checkpoint_index)
    code, lines = _verify()
    gone = [f for f in lines if f.get("finding") == "checkpoint"]
    assert code == 1 and gone
    assert all("missing from the checkpoint index" in f["detail"] for f in gone)

    # ...and with the Kafka anchor deleted too, the file still has them.
    admin = KafkaAdminClient(bootstrap_servers=isolated.kafka_servers())
    try:
        admin.delete_topics([isolated.checkpoint_topic])
    finally:
        admin.close()
    time.sleep(2)
    code, lines = _verify()
    gone = [f for f in lines if f.get("finding") == "checkpoint"]
    assert code == 1 and gone and all(str(anchor_file) in f["detail"] for f in gone)

    # Without the key: the structure is still checked, and the summary says what was not.
    monkeypatch.delenv("GUETTEUR_CHECKPOINT_KEY")
    code, lines = _verify()
    assert code == 1 and "record MACs" in lines[-1]["not_checked"]
    assert lines[-1]["macs_unchecked"] == lines[-1]["records_checked"]


def test_verify_reports_an_insertion_and_a_reordering(isolated: Settings, tmp_path: Path) -> None:
    events = [_event(f"ro-{n}", f"2026-11-16T10:{n:02d}:00+01:00") for n in range(8)]
    _run_worker(isolated, [json.dumps(e).encode() for e in events], 8, tmp_path / "w.log")
    client = sync_client(isolated)
    history = stored_history(client, isolated)
    chains: dict[int, list[dict[str, Any]]] = {}
    for source in history.values():
        chains.setdefault(chain_fields(source)["partition"], []).append(source)
    biggest = max(chains, key=lambda partition: len(chains[partition]))
    longest = sorted(chains[biggest], key=lambda s: chain_fields(s)["seq"])
    assert len(longest) >= 3

    # Two records swap places in the chain (their seq, prev and offsets), without the key.
    a, b = longest[0], longest[1]
    swapped = {}
    for this, that in ((a, b), (b, a)):
        fields = dict(chain_fields(this))
        for name in ("seq", "prev", "offset"):
            fields[name] = chain_fields(that)[name]
        swapped[this["event"]["id"]] = fields
    for event_id, fields in swapped.items():
        client.update(
            index=_index_of(client, isolated, event_id),
            id=event_id,
            doc={"guetteur": {"chain": fields}},
            refresh=True,
        )
    code, lines = _verify()
    assert code == 1 and {"modified"} <= {f["finding"] for f in lines if "finding" in f}

    # A record inserted mid-chain at a taken position.
    intruder = copy.deepcopy(longest[2])
    intruder["event"]["id"] = "intruder"
    client.index(
        index=_index_of(client, isolated, longest[2]["event"]["id"]),
        id="intruder",
        document=intruder,
        refresh=True,
    )
    code, lines = _verify()
    assert ("inserted", str(chain_fields(intruder)["seq"]), "intruder") in _findings(lines)

"""The chain check, on chains built in memory: each kind of tampering gives its finding, with
the checkpoint key, and what can be told without it."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from detectors.models import AccessEvent
from streams.history.audit import ChainAudit, Finding, Record, Removed
from streams.history.chain import (
    START,
    Link,
    Position,
    canonical,
    chain_fields,
    link,
    link_encoded,
    seal,
    unsealed,
)
from streams.history.document import history_document
from streams.keys import Key
from tests.helpers import MINIMAL_EVENT

KEY = Key("c1", b"chain-key-for-tests-0123456789abcdef")
OLD_KEY = Key("c0", b"older-chain-key-0123456789abcdef0123")
KEYRING = {KEY.key_id: KEY, OLD_KEY.key_id: OLD_KEY}


def _chain(length: int, partition: int = 0, key: Key = KEY) -> list[Record]:
    records, head = [], START
    for n in range(1, length + 1):
        at = Position("access-events", partition, n * 10)
        document, head = link({"event": {"id": f"e-{n}"}, "n": n}, at, head, key)
        records.append(Record("history-2026.11", f"e-{n}", document))
    return records


def _append(records: list[Record], document: dict[str, Any], event_id: str) -> Record:
    """A record chained by hand after the last one, as an intruder would (no key)."""
    last = chain_fields(records[-1].source)
    chain = {**last, "seq": last["seq"] + 1, "prev": last["hash"]}
    chain.pop("hash")
    forged = {**document, "event": {"id": event_id}, "guetteur": {"chain": chain}}
    return Record("history-2026.11", event_id, forged)


def _head(records: list[Record], seq: int) -> tuple[Link, str]:
    return Link(seq, chain_fields(records[seq - 1].source)["hash"]), "checkpoint c-1"


def _audit(
    records: list[Record],
    heads: list[tuple[Link, str]] | None = None,
    removed: list[Removed] | None = None,
    start: int = 1,
) -> list[Finding]:
    audit = ChainAudit(0, start=start, removed=removed or [], keys=KEYRING)
    audit.walk(records)
    audit.check_heads(heads or [])
    return audit.findings


def _kinds(findings: list[Finding]) -> list[tuple[str, str | None, str | None]]:
    return [(f.kind, f.seq, f.event_id) for f in findings]


def test_an_untouched_chain_has_no_findings() -> None:
    records = _chain(5)
    assert _audit(records, [_head(records, 5)]) == []


def test_an_edited_record_no_longer_matches_its_mac() -> None:
    records = _chain(5)
    records[2].source["n"] = 99
    assert _kinds(_audit(records)) == [("modified", "3", "e-3")]


def test_an_edit_resealed_with_the_key_breaks_the_next_link() -> None:
    """Only an insider with the key can reseal; the next record still links to the old MAC."""
    records = _chain(5)
    forged = records[2].source
    forged["n"] = 99
    forged["guetteur"]["chain"]["hash"] = seal(forged, KEY)
    assert _kinds(_audit(records)) == [("modified", "3", "e-3")]


def test_a_record_appended_with_a_correct_plain_hash_is_reported() -> None:
    """The attack that passed before: SHA-256 over the canonical JSON, as the old chain did."""
    records = _chain(4)
    forged = _append(records, {"n": 5}, "forged")
    chain = forged.source["guetteur"]["chain"]
    del chain["key_id"]
    chain["offset"] = 50
    chain["hash"] = hashlib.sha256(unsealed(forged.source)).hexdigest()
    findings = _audit([*records, forged])
    assert _kinds(findings) == [("inserted", "5", "forged")]
    assert "plain hash" in findings[0].detail


def test_a_record_appended_under_the_key_id_but_without_the_key_is_reported() -> None:
    records = _chain(4)
    forged = _append(records, {"n": 5}, "forged")
    forged.source["guetteur"]["chain"]["offset"] = 50
    forged.source["guetteur"]["chain"]["hash"] = seal(forged.source, Key("c1", b"x" * 32))
    assert _kinds(_audit([*records, forged])) == [("modified", "5", "forged")]


def test_a_record_claiming_an_earlier_offset_is_reported() -> None:
    """A forged record may claim a real one's Kafka position; in a chain, offsets only grow."""
    records = _chain(4)
    forged = _append(records, {"n": 5}, "forged")
    forged.source["guetteur"]["chain"]["offset"] = 20  # e-2's
    forged.source["guetteur"]["chain"]["hash"] = seal(forged.source, KEY)  # even with the key
    findings = _audit([*records, forged])
    assert _kinds(findings) == [("inserted", "5", "forged")]
    assert "offset 20" in findings[0].detail


def test_reordered_records_are_reported() -> None:
    records = _chain(5)
    a, b = records[1].source["guetteur"]["chain"], records[2].source["guetteur"]["chain"]
    a["seq"], b["seq"] = b["seq"], a["seq"]  # swap their places without the key
    assert {f.kind for f in _audit(sorted(records, key=lambda r: r.seq))} >= {"modified"}


def test_records_sealed_before_a_rotation_still_verify() -> None:
    old = _chain(3, key=OLD_KEY)
    head = Link(3, chain_fields(old[-1].source)["hash"])
    at = Position("access-events", 0, 40)
    document, _ = link({"event": {"id": "e-4"}, "n": 4}, at, head, KEY)
    assert _audit([*old, Record("history-2026.11", "e-4", document)]) == []


@pytest.mark.parametrize("keys", [None, {}])
def test_without_the_key_the_structure_is_still_checked_and_the_rest_counted(
    keys: dict[str, Key] | None,
) -> None:
    records = _chain(6)
    records[1].source["n"] = 99  # content edits need the key to be seen
    del records[3]
    audit = ChainAudit(0, keys=keys)
    audit.walk(records)
    assert _kinds(audit.findings) == [("deleted", "4", None)]
    assert audit.unsealed == 5


def test_a_rewritten_tail_is_caught_by_the_signed_head() -> None:
    records = _chain(5)
    head = _head(records, 5)
    previous = Link(3, chain_fields(records[2].source)["hash"])
    for record in records[3:]:  # re-chain seq 4 and 5 after editing seq 4
        source = record.source
        source["n"] += 100
        source["guetteur"]["chain"]["prev"] = previous.hash
        source["guetteur"]["chain"]["hash"] = seal(source, KEY)  # an insider with the key
        previous = Link(previous.seq + 1, source["guetteur"]["chain"]["hash"])
    assert _kinds(_audit(records)) == []  # the chain alone cannot tell...
    assert _kinds(_audit(records, [head])) == [("modified", "5", "e-5")]  # ...the signature can


def test_deleted_records_leave_a_gap() -> None:
    records = _chain(6)
    del records[2:4]
    findings = _audit(records)
    assert _kinds(findings) == [("deleted", "3-4", None)]
    assert "2 record(s) missing" in findings[0].detail


def test_a_deleted_first_record_is_a_gap_too() -> None:
    assert _kinds(_audit(_chain(3)[1:])) == [("deleted", "1", None)]


def test_a_record_claiming_a_taken_position_is_inserted() -> None:
    records = _chain(4)
    intruder = Record("history-2026.11", "x", copy.deepcopy(records[1].source))
    intruder.source["event"]["id"] = "x"
    findings = _audit([*records[:2], intruder, *records[2:]])
    assert ("inserted", "2", "x") in _kinds(findings)


def test_a_deleted_newest_record_is_a_truncation() -> None:
    records = _chain(5)
    heads = [_head(records, 3), _head(records, 5)]
    findings = _audit(records[:4], heads)
    assert _kinds(findings) == [("truncated", "5", None)]
    assert "ends at 4" in findings[0].detail


def test_retention_runs_are_not_deletions_and_their_link_is_still_checked() -> None:
    records = _chain(8)
    removed = [
        Removed(1, 3, chain_fields(records[2].source)["hash"]),
        Removed(6, 6, chain_fields(records[5].source)["hash"]),
    ]
    kept = [r for r in records if r.seq not in {1, 2, 3, 6}]
    assert _audit(kept, [_head(records, 2), _head(records, 8)], removed) == []

    tampered = [Removed(1, 3, "f" * 64), removed[1]]
    assert _kinds(_audit(kept, removed=tampered)) == [("modified", "3", None)]

    kept.remove(records[6])  # seq 7, right after a purged run
    assert _kinds(_audit(kept, removed=removed)) == [("deleted", "7", None)]


def test_a_window_starts_mid_chain_without_reporting_what_precedes_it() -> None:
    records = _chain(10)
    assert _audit(records[4:8], [_head(records, 6)], start=5) == []
    assert _kinds(_audit(records[5:8], start=5)) == [("deleted", "5", None)]


def test_documents_are_sealed_over_prev_and_position_but_not_over_their_own_mac() -> None:
    document: dict[str, Any] = {"a": 1}
    chained, head = link(document, Position("access-events", 2, 7), START, KEY)
    assert chain_fields(chained) == {
        "topic": "access-events",
        "partition": 2,
        "offset": 7,
        "key_id": "c1",
        "seq": 1,
        "prev": START.hash,
        "hash": head.hash,
    }
    assert seal(chained, KEY) == head.hash != hashlib.sha256(unsealed(chained)).hexdigest()
    assert document == {"a": 1}  # the input is not changed


def test_the_stored_json_is_the_canonical_json_of_the_chained_document() -> None:
    """The writer stores the bytes it hashed, with the hash spliced in: they must be exactly
    what encoding the chained document gives, whatever the producer put in its fields."""
    trap = '"guetteur":{"chain":{'
    hostile = {
        **MINIMAL_EVENT,
        "event_id": trap,
        "attributes": {"guetteur": {"chain": {"hash": "forged"}}, trap: trap, "é": "\u2028"},
    }
    event = AccessEvent.model_validate_json(json.dumps(hostile))
    document = history_document(event, datetime(2026, 11, 24, tzinfo=UTC))
    head = START
    for offset in range(3):
        at = Position("access-events", 1, offset)
        chained, encoded, head = link_encoded(document, at, head, KEY)
        assert encoded == canonical(chained)
        assert json.loads(encoded) == chained
        assert seal(chained, KEY) == head.hash

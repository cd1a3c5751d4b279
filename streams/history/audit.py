"""Checking one partition's chain against itself and its signed records (pure, no I/O).

Findings say what an auditor needs to act on, precisely:
- ``modified``: a record's content no longer matches its MAC, or its MAC no longer matches the
  next record's link or a signed checkpoint;
- ``deleted``: sequence numbers missing inside the chain (and not removed by retention);
- ``inserted``: a record claiming a position that is already taken (in the chain, or in Kafka:
  an offset at or before the previous record's), sealed without a key (a plain hash anyone can
  compute), or carrying no chain at all;
- ``truncated``: the chain ends before the head a signed checkpoint recorded.

Without the checkpoint keys the walk still checks the structure (sequence, links, offsets) and
counts the records whose MAC it could not check, so the report says what it did not prove.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.history.chain import GENESIS, Link, chain_fields, seal
from streams.keys import Key


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    partition: int | None = None
    seq: str | None = None  # one number, or "FIRST-LAST" for a run
    event_id: str | None = None
    index: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "finding": self.kind,
            "partition": self.partition,
            "seq": self.seq,
            "event_id": self.event_id,
            "index": self.index,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Record:
    index: str
    doc_id: str
    source: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(chain_fields(self.source)["seq"])


@dataclass(frozen=True)
class Removed:
    """A run of one partition's chain that retention deleted, and the hash of its last record."""

    first: int
    last: int
    last_hash: str


@dataclass
class ChainAudit:
    """Walks one partition's records in sequence order; collects findings."""

    partition: int
    start: int = 1  # the first sequence number expected
    removed: list[Removed] = field(default_factory=list)
    keys: Mapping[str, Key] | None = None  # None: MACs cannot be checked (no key given)
    findings: list[Finding] = field(default_factory=list)
    hashes: dict[int, str] = field(default_factory=dict)
    checked: int = 0
    unsealed: int = 0  # records whose MAC could not be checked (no key, or an unknown key id)
    _last: Record | None = None
    _blamed: set[int] = field(default_factory=set)

    def walk(self, records: Iterable[Record]) -> None:
        for record in records:
            self._step(record)

    def check_heads(self, heads: Iterable[tuple[Link, str]]) -> None:
        """Compare signed chain heads (with where they come from) to what the walk saw."""
        last_seen = self._last.seq if self._last else self.start - 1
        truncated_to = 0
        for head, origin in heads:
            if self._is_removed(head.seq) or head.seq < self.start:
                continue
            if head.seq in self.hashes:
                if self.hashes[head.seq] != head.hash and head.seq not in self._blamed:
                    self._blame(head.seq, f"differs from the chain head signed in {origin}")
            elif head.seq > last_seen:
                truncated_to = max(truncated_to, head.seq)
        if truncated_to:
            self.findings.append(
                Finding(
                    "truncated",
                    f"the chain ends at {last_seen} but a signed checkpoint recorded "
                    f"{truncated_to}: the newest records are gone",
                    self.partition,
                    _run(last_seen + 1, truncated_to),
                )
            )

    def _step(self, record: Record) -> None:
        self.checked += 1
        fields = chain_fields(record.source)
        seq = record.seq
        intact = self._sealed(record, fields)
        last_seq = self._last.seq if self._last else self.start - 1
        if seq <= last_seq:
            self._inserted(record, f"a second record claims position {seq} of the chain")
            return
        self._check_offset(record, fields)
        self._report_gap(last_seq + 1, seq - 1)
        expected = self._expected_prev(seq)
        if intact is not False and expected is not None and fields.get("prev") != expected:
            self._blame(seq - 1, "its MAC was recomputed: the next record links to another one")
        self.hashes[seq] = str(fields.get("hash"))
        self._last = record

    def _sealed(self, record: Record, fields: dict[str, Any]) -> bool | None:
        """Whether the record's MAC holds; None when it cannot be told (no key for it)."""
        if "key_id" not in fields:
            self._inserted(record, "its link is a plain hash anyone can compute, not a MAC")
            return False
        key = None if self.keys is None else self.keys.get(str(fields["key_id"]))
        if key is None:
            self.unsealed += 1
            return None
        if seal(record.source, key) != fields.get("hash"):
            self._blame(
                record.seq, "its MAC does not hold: edited, or written without the key", record
            )
            return False
        return True

    def _check_offset(self, record: Record, fields: dict[str, Any]) -> None:
        """A chain follows its partition in offset order: a record whose offset is not after
        the previous one's claims a position in Kafka that another record holds."""
        if self._last is None:
            return
        offset, previous = fields.get("offset"), chain_fields(self._last.source).get("offset")
        if not isinstance(offset, int) or not isinstance(previous, int) or offset <= previous:
            self._inserted(
                record,
                f"claims Kafka offset {offset}, not after offset {previous} of the record "
                "before it",
            )

    def _inserted(self, record: Record, why: str) -> None:
        self.findings.append(
            Finding(
                "inserted", why, self.partition, str(record.seq), _event_id(record), record.index
            )
        )

    def _expected_prev(self, seq: int) -> str | None:
        if seq == 1:
            return GENESIS
        if self._last is not None and self._last.seq == seq - 1:
            return str(chain_fields(self._last.source).get("hash"))
        for run in self.removed:
            if run.last == seq - 1:
                return run.last_hash
        return None  # the previous record is missing: already reported

    def _report_gap(self, first: int, last: int) -> None:
        missing = [s for s in range(first, last + 1) if not self._is_removed(s)]
        for run_first, run_last in consecutive_runs(missing):
            self.findings.append(
                Finding(
                    "deleted",
                    f"{run_last - run_first + 1} record(s) missing from the chain",
                    self.partition,
                    _run(run_first, run_last),
                )
            )

    def _blame(self, seq: int, why: str, record: Record | None = None) -> None:
        if seq in self._blamed:
            return
        self._blamed.add(seq)
        if record is None and self._last is not None and self._last.seq == seq:
            record = self._last
        self.findings.append(
            Finding(
                "modified",
                why,
                self.partition,
                str(seq),
                _event_id(record) if record else None,
                record.index if record else None,
            )
        )

    def _is_removed(self, seq: int) -> bool:
        return any(run.first <= seq <= run.last for run in self.removed)


def _event_id(record: Record) -> str:
    return str(record.source.get("event", {}).get("id", record.doc_id))


def _run(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


def consecutive_runs(numbers: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs of sorted numbers, as (first, last)."""
    if not numbers:
        return
    first = previous = numbers[0]
    for number in numbers[1:]:
        if number != previous + 1:
            yield first, previous
            first = number
        previous = number
    yield first, previous

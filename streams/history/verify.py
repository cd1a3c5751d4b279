"""``guetteur verify``: re-read the history and its signed records; report any tampering.

The walk is per partition, in chain order. With ``--from/--to`` (event time) only the part of
each chain holding those events is walked, plus one record on each side, so a deletion at the
edge of the window still shows as a gap.

What is checked, and with what:
- every record's chain structure (sequence, links, offsets in order): always;
- every record's MAC and every signed record's signature: with the checkpoint keyring;
- the signed records against their anchors outside Elasticsearch (``anchors``): always;
- every record's claimed Kafka position against the message there (``positions``): while
  Kafka retains it, unless turned off.
Whatever could not be checked is counted and named in the summary, never silently passed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError
from elasticsearch.helpers import scan

from streams.history.anchors import read_anchored
from streams.history.audit import ChainAudit, Finding, Record, Removed
from streams.history.chain import Link
from streams.history.checkpoints import HEADS, RETENTION, SignedRecord, check, read_indexed
from streams.history.positions import PositionCheck
from streams.keys import Key
from streams.settings import Settings

PARTITION = "guetteur.chain.partition"
SEQ = "guetteur.chain.seq"


@dataclass
class Report:
    records: int = 0
    partitions: int = 0
    checkpoints: int = 0
    anchored: int = 0
    macs_unchecked: int = 0
    positions_checked: int = 0
    positions_expired: int = 0
    findings: list[Finding] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> dict[str, Any]:
        return {
            "result": "ok" if self.ok else "tampering found",
            "records_checked": self.records,
            "partitions": self.partitions,
            "signed_records": self.checkpoints,
            "anchored_records": self.anchored,
            "macs_unchecked": self.macs_unchecked,
            "kafka_positions_checked": self.positions_checked,
            "kafka_positions_expired": self.positions_expired,
            "findings": len(self.findings),
            "not_checked": "; ".join(self.not_checked) or None,
        }


@dataclass(frozen=True)
class Span:
    """The sequence numbers of one chain to walk; ``last=None`` walks to its end."""

    first: int
    last: int | None

    def holds(self, seq: int) -> bool:
        return seq >= self.first and (self.last is None or seq <= self.last)


@dataclass(frozen=True)
class Window:
    """Event-time bounds (inclusive); ``None`` = open."""

    start: datetime | None = None
    end: datetime | None = None

    def query(self) -> dict[str, Any]:
        bounds = {}
        if self.start is not None:
            bounds["gte"] = self.start.isoformat()
        if self.end is not None:
            bounds["lte"] = self.end.isoformat()
        return {"range": {"@timestamp": bounds}} if bounds else {"match_all": {}}


def verify(
    client: Elasticsearch,
    settings: Settings,
    keys: list[Key] | None,
    window: Window = Window(),
    progress: Callable[[int], None] | None = None,
    kafka: bool = True,
) -> Report:
    """``keys=None``: no checkpoint key at hand; structure, anchors and positions only."""
    report = Report()
    signed = _signed_records(client, settings, keys, report)
    valid = [record for record in signed if record.valid]
    alias = settings.history_index
    try:
        client.indices.refresh(index=alias)
    except NotFoundError:
        return report if not valid else _all_gone(report, valid)
    spans = _spans(client, alias, window)
    heads = _heads(valid)
    whole = window.start is None and window.end is None
    if whole:
        for partition in heads:  # a chain deleted whole is a truncation too
            spans.setdefault(partition, Span(1, None))
        if spans and not heads:
            report.findings.append(_unanchored())
    keyring = None if keys is None else {key.key_id: key for key in keys}
    positions = PositionCheck(settings) if kafka else None
    for partition, span in sorted(spans.items()):
        audit = ChainAudit(partition, span.first, _removed(valid, partition), keyring)
        records = _records(client, alias, partition, span, report, progress)
        audit.walk(positions.follow(records, span.first == 1) if positions else records)
        audit.check_heads((h, o) for h, o in heads.get(partition, []) if span.holds(h.seq))
        report.findings += audit.findings
        report.macs_unchecked += audit.unsealed
    report.partitions = len(spans)
    report.findings += _unchained(client, alias, window)
    _positions_checked(client, positions, report, _purged(valid))
    _say_what_was_not_checked(report, keys is None)
    return report


def _signed_records(
    client: Elasticsearch, settings: Settings, keys: list[Key] | None, report: Report
) -> list[SignedRecord]:
    """The checkpoint index and its anchors, reconciled: an anchored record missing from the
    index or differing from it is a finding, and still counts for the heads it signed."""
    indexed = read_indexed(client, settings)
    by_id = dict(indexed)
    extra: dict[str, dict[str, Any]] = {}
    anchored_ids = set()
    for anchored in read_anchored(settings):
        anchored_ids.add(anchored.doc_id)
        stored = by_id.get(anchored.doc_id)
        if stored is None and anchored.doc_id not in extra:
            extra[anchored.doc_id] = anchored.document
            report.findings.append(
                Finding(
                    "checkpoint",
                    f"signed record {anchored.doc_id} is anchored in {anchored.anchor} but "
                    "missing from the checkpoint index: it was deleted",
                )
            )
        elif stored is not None and stored != anchored.document:
            report.findings.append(
                Finding(
                    "checkpoint",
                    f"signed record {anchored.doc_id} differs from its copy in {anchored.anchor}",
                )
            )
    report.anchored = len(anchored_ids)
    records = [*indexed, *extra.items()]
    report.checkpoints = len(records)
    if keys is None:
        return [SignedRecord(doc_id, _body(source), True) for doc_id, source in records]
    by_key = {key.key_id: key for key in keys}
    checked = [check(doc_id, source, by_key) for doc_id, source in records]
    report.findings += [_bad_signature(record) for record in checked if not record.valid]
    return checked


def _body(source: dict[str, Any]) -> dict[str, Any]:
    try:
        body = json.loads(str(source.get("checkpoint", {}).get("body", "")))
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _positions_checked(
    client: Elasticsearch, positions: PositionCheck | None, report: Report, purged: set[str]
) -> None:
    if positions is None:
        report.not_checked.append("Kafka positions (--no-kafka)")
        return
    positions.finish(client, purged)
    report.findings += positions.findings
    report.positions_checked = positions.checked
    report.positions_expired = positions.beyond_retention


def _say_what_was_not_checked(report: Report, keyless: bool) -> None:
    if keyless:
        report.not_checked.append(
            "record MACs and checkpoint signatures (no checkpoint key: set "
            "GUETTEUR_CHECKPOINT_KEY or GUETTEUR_CHECKPOINT_KEY_FILE)"
        )
    elif report.macs_unchecked:
        report.not_checked.append(
            f"{report.macs_unchecked} record MACs (sealed with a key id missing from the keyring)"
        )
    if report.positions_expired:
        report.not_checked.append(
            f"{report.positions_expired} Kafka positions (no longer retained by Kafka)"
        )


def _unanchored() -> Finding:
    return Finding(
        "checkpoint",
        "no signed checkpoint covers the history (none in the index, none in the anchors): "
        "its chain heads cannot be checked, so deletions at their ends would not show",
    )


def _spans(client: Elasticsearch, alias: str, window: Window) -> dict[int, Span]:
    """Per partition, the sequence numbers to walk: the window's, widened by one each side.

    An open end walks to the chain's end, so a truncation shows.
    """
    response = client.search(
        index=alias,
        size=0,
        query=window.query(),
        aggs={
            "partitions": {
                "terms": {"field": PARTITION, "size": 65536},
                "aggs": {"first": {"min": {"field": SEQ}}, "last": {"max": {"field": SEQ}}},
            }
        },
    )
    spans = {}
    for bucket in response["aggregations"]["partitions"]["buckets"]:
        first = int(bucket["first"]["value"]) - 1 if window.start else 1
        last = int(bucket["last"]["value"]) + 1 if window.end else None
        spans[int(bucket["key"])] = Span(max(1, first), last)
    return spans


def _records(
    client: Elasticsearch,
    alias: str,
    partition: int,
    span: Span,
    report: Report,
    progress: Callable[[int], None] | None,
) -> Iterator[Record]:
    hits = scan(
        client,
        index=alias,
        query={
            "query": {
                "bool": {
                    "filter": [
                        {"term": {PARTITION: partition}},
                        {"range": {SEQ: {"gte": span.first}}},
                    ]
                }
            },
            "sort": [{SEQ: "asc"}],
        },
        preserve_order=True,
        size=1000,
    )
    for hit in hits:
        record = Record(hit["_index"], hit["_id"], hit["_source"])
        if span.last is not None and record.seq > span.last:
            return
        report.records += 1
        if progress is not None and report.records % 1000 == 0:
            progress(report.records)
        yield record


def _unchained(client: Elasticsearch, alias: str, window: Window) -> list[Finding]:
    """Documents with no chain at all: nobody but an intruder writes those."""
    response = client.search(
        index=alias,
        size=100,
        query={
            "bool": {
                "filter": [window.query()],
                "must_not": [{"exists": {"field": "guetteur.chain.hash"}}],
            }
        },
    )
    return [
        Finding(
            "inserted",
            "a record with no chain link",
            index=hit["_index"],
            event_id=hit["_source"].get("event", {}).get("id", hit["_id"]),
        )
        for hit in response["hits"]["hits"]
    ]


def _heads(signed: list[SignedRecord]) -> dict[int, list[tuple[Link, str]]]:
    heads: dict[int, list[tuple[Link, str]]] = {}
    for record in signed:
        if record.kind != HEADS:
            continue
        origin = f"checkpoint {record.doc_id}"
        for partition, head in record.body.get("heads", {}).items():
            link = Link(int(head["seq"]), str(head["hash"]))
            heads.setdefault(int(partition), []).append((link, origin))
    return heads


def _removed(signed: list[SignedRecord], partition: int) -> list[Removed]:
    runs = []
    for record in signed:
        if record.kind == RETENTION:
            for first, last, last_hash in record.body.get("removed", {}).get(str(partition), []):
                runs.append(Removed(int(first), int(last), str(last_hash)))
    return runs


def _purged(signed: list[SignedRecord]) -> set[str]:
    """The monthly indices retention removed, as its signed records say."""
    return {str(r.body.get("index")) for r in signed if r.kind == RETENTION}


def _bad_signature(record: SignedRecord) -> Finding:
    return Finding(
        "checkpoint",
        f"signed record {record.doc_id} cannot be trusted: {record.problem}",
    )


def _all_gone(report: Report, signed: list[SignedRecord]) -> Report:
    report.findings.append(
        Finding("truncated", f"the history is gone but {len(signed)} signed record(s) exist")
    )
    return report

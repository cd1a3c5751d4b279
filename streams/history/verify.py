"""``guetteur verify``: re-read the history and its signed records; report any tampering.

The walk is per partition, in chain order. With ``--from/--to`` (event time) only the part of
each chain holding those events is walked, plus one record on each side, so a deletion at the
edge of the window still shows as a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError
from elasticsearch.helpers import scan

from streams.history.audit import ChainAudit, Finding, Record, Removed
from streams.history.chain import Link
from streams.history.checkpoints import HEADS, RETENTION, SignedRecord, read_signed
from streams.keys import Key
from streams.settings import Settings

PARTITION = "guetteur.chain.partition"
SEQ = "guetteur.chain.seq"


@dataclass
class Report:
    records: int = 0
    partitions: int = 0
    checkpoints: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> dict[str, Any]:
        return {
            "result": "ok" if self.ok else "tampering found",
            "records_checked": self.records,
            "partitions": self.partitions,
            "signed_records": self.checkpoints,
            "findings": len(self.findings),
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
    keys: list[Key],
    window: Window = Window(),
    progress: Callable[[int], None] | None = None,
) -> Report:
    report = Report()
    signed = read_signed(client, settings, keys)
    report.checkpoints = len(signed)
    report.findings += [_bad_signature(record) for record in signed if not record.valid]
    valid = [record for record in signed if record.valid]
    alias = settings.history_index
    try:
        client.indices.refresh(index=alias)
    except NotFoundError:
        return report if not valid else _all_gone(report, valid)
    spans = _spans(client, alias, window)
    heads = _heads(valid)
    if window.start is None and window.end is None:
        for partition in heads:  # a chain deleted whole is a truncation too
            spans.setdefault(partition, Span(1, None))
    for partition, span in sorted(spans.items()):
        audit = ChainAudit(partition, start=span.first, removed=_removed(valid, partition))
        audit.walk(_records(client, alias, partition, span, report, progress))
        audit.check_heads((h, o) for h, o in heads.get(partition, []) if span.holds(h.seq))
        report.findings += audit.findings
    report.partitions = len(spans)
    report.findings += _unchained(client, alias, window)
    return report


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

"""Retention: monthly history indices older than the configured months are deleted whole.

Deleting whole indices is cheap and leaves no half-purged month. Before an index goes, a signed
retention record lists the chain runs it held (per partition: first and last sequence number and
the last record's hash), so ``verify`` tells a legitimate purge from a deletion and still checks
the link across it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from streams.history.audit import consecutive_runs
from streams.history.chain import chain_fields
from streams.history.checkpoints import RETENTION, write_signed
from streams.keys import Key
from streams.settings import Settings


@dataclass(frozen=True)
class Expired:
    index: str
    month: str  # YYYY-MM
    documents: int

    def row(self) -> dict[str, object]:
        return {"index": self.index, "month": self.month, "documents": self.documents}


def cutoff(now: datetime, months: int) -> date:
    """The same day ``months`` months ago (clamped to the month's length)."""
    year, month = divmod(now.year * 12 + now.month - 1 - months, 12)
    day = min(now.day, _days_in(year, month + 1))
    return date(year, month + 1, day)


def _days_in(year: int, month: int) -> int:
    following = date(year + month // 12, month % 12 + 1, 1)
    return (following - date(year, month, 1)).days


def expired(client: Elasticsearch, settings: Settings, now: datetime) -> list[Expired]:
    """Monthly indices whose every event is older than the retention period."""
    limit = cutoff(now.astimezone(UTC), settings.retention_months)
    pattern = re.compile(re.escape(settings.history_index) + r"-(\d{4})\.(\d{2})$")
    found = []
    names = client.indices.get(index=f"{settings.history_index}-*", allow_no_indices=True)
    for name in sorted(names):
        match = pattern.match(name)
        if not match:
            continue
        year, month = int(match[1]), int(match[2])
        month_end = date(year + month // 12, month % 12 + 1, 1)
        if month_end <= limit:
            count = int(client.count(index=name)["count"])
            found.append(Expired(name, f"{year:04d}-{month:02d}", count))
    return found


def removed_runs(client: Elasticsearch, index: str) -> dict[str, list[list[object]]]:
    """Per partition, the chain runs ``[first, last, last_hash]`` an index holds."""
    hashes: dict[int, dict[int, str]] = {}
    for hit in scan(client, index=index, source=["guetteur.chain"], size=5000):
        fields = chain_fields(hit["_source"])
        if "seq" in fields:
            hashes.setdefault(int(fields["partition"]), {})[int(fields["seq"])] = fields["hash"]
    runs: dict[str, list[list[object]]] = {}
    for partition, by_seq in sorted(hashes.items()):
        runs[str(partition)] = [
            [first, last, by_seq[last]] for first, last in consecutive_runs(sorted(by_seq))
        ]
    return runs


def apply(
    client: Elasticsearch,
    settings: Settings,
    key: Key,
    now: datetime,
    progress: Callable[[str], None] | None = None,
) -> list[Expired]:
    """Record, sign, then delete each expired month; the record first, so none goes unrecorded."""
    done = []
    for month in expired(client, settings, now):
        if progress is not None:
            progress(f"removing {month.index} ({month.documents} documents)")
        client.indices.refresh(index=month.index)
        body = {
            "kind": RETENTION,
            "app_id": settings.app_id,
            "created_at": now.astimezone(UTC).isoformat(),
            "index": month.index,
            "retention_months": settings.retention_months,
            "documents": month.documents,
            "removed": removed_runs(client, month.index),
        }
        write_signed(client, settings, key, body)
        client.indices.delete(index=month.index)
        done.append(month)
    return done

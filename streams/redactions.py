"""What minimisation took out of accepted events, reported without the values.

A DPO needs to know that producers send identifiers where they should not (to fix the
producer), and an operator needs to see it happening, but the report must not become a second
copy of what it removed. Each event that lost something gets one record on the redaction topic
(``<events topic>-redactions``): its minimised event id, its source position and, per field,
the kinds of identifier removed and how many. ``guetteur redactions`` reads it;
``guetteur_identifiers_redacted_total{field,kind}`` counts it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams import metrics
from streams.backoff import Backoff
from streams.history.writer import Accepted
from streams.minimise import Redaction, kinds
from streams.settings import Settings
from streams.topics import read_topic, send_all


@dataclass(frozen=True)
class Redacted:
    """An accepted event and what minimising it removed."""

    topic: str
    accepted: Accepted
    redactions: list[Redaction]

    def record(self, now: datetime) -> dict[str, Any]:
        event = self.accepted.event
        return {
            "event_id": event.event_id,  # minimised itself
            "source": event.source,
            "source_topic": self.topic,
            "source_position": f"{self.accepted.partition}:{self.accepted.offset}",
            "redacted_at": now.isoformat(),
            "removed": [
                {"field": field, "kind": kind, "count": count}
                for (field, kind), count in sorted(kinds(self.redactions).items())
            ],
        }


class RedactionReport:
    """Sends the batch's records, acknowledged, before the batch is acknowledged."""

    def __init__(self, topic: Any, backoff: Backoff):
        self.topic = topic
        self.backoff = backoff

    async def send(self, redacted: Sequence[Redacted]) -> None:
        if not redacted:
            return
        counted: dict[tuple[str, str], int] = {}
        for item in redacted:
            for key, count in kinds(item.redactions).items():
                counted[key] = counted.get(key, 0) + count
        for (field, kind), count in counted.items():
            metrics.IDENTIFIERS_REDACTED.labels(field, kind).inc(count)
        now = datetime.now(UTC)
        messages = [
            (item.accepted.event.event_id.encode(), json.dumps(item.record(now)).encode())
            for item in redacted
        ]

        async def deliver() -> None:
            await send_all(self.topic, messages)

        await self.backoff.call("redaction report", deliver)


def read_all(settings: Settings) -> Iterator[dict[str, Any]]:
    for record in read_topic(settings, settings.redaction_topic, "guetteur-redactions-reader"):
        try:
            yield json.loads(record.value or b"{}")
        except ValueError:
            continue

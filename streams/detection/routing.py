"""The internal detect topic: one message per ingest batch and detect partition, not per event.

Faust's per-message machinery, not Kafka, is the worker's ceiling (architecture.md: ~110 µs a
message), so an event routed to two detectors as two messages cost the worker three times what
reading it did. Here an ingest batch becomes one message per detect partition: the events
that partition needs (each once, as JSON), which detector and key each goes to, and the source
progress those events bring the clock to (``watermark``). A partition with nothing to do still
gets the progress alone, so its clock moves.

Where a key's events go and where its state is stored must agree: both are placed by
``key_partitioner`` on the key as the tables serialise it (it is also the app's producer
partitioner, which the tables use), so a key's state lives on the partition its events reach.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from faust.serializers.codecs import dumps as faust_dumps
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter

from detectors.alerts import Alert
from detectors.base import Detector
from detectors.models import AccessEvent
from detectors.runner import routes, state_key

# A forwarded message stays well under the broker's 1 MiB limit (one event is at most 64 KiB).
MAX_MESSAGE_BYTES = 512 * 1024

_ALERTS = TypeAdapter(list[Alert])


def key_partitioner(key: bytes | None, all_partitions: Sequence[int], available: Any) -> int:
    """The app's producer partitioner: CRC-32 of the key bytes (a C call, where Kafka's default
    murmur2 is pure Python here); keyless messages go anywhere."""
    if key is None:
        return int(random.choice(list(available or all_partitions)))
    return int(all_partitions[zlib.crc32(key) % len(all_partitions)])


def partition_of(key: str, partitions: int) -> int:
    """The partition of a table key (a detector state, an incident), as the table stores it."""
    return zlib.crc32(faust_dumps("json", key)) % partitions


@dataclass
class _Outgoing:
    events: list[str] = field(default_factory=list)
    routes: list[tuple[int, str, str]] = field(default_factory=list)
    size: int = 0


@dataclass(frozen=True)
class Forwarded:
    """One message of the detect topic, decoded: events parsed once, their routes, progress."""

    events: list[AccessEvent]
    routes: list[tuple[int, str, str]]  # (index in events, detector, key)
    progress: dict[int, datetime]
    generation: int  # of the consumer group, when the progress was measured (``watermark``)


def forward(
    events: Iterable[AccessEvent],
    detectors: dict[str, Detector[Any]],
    partitions: int,
    progress: Mapping[int, datetime],
    on_error: Callable[[str, str, Exception], None],
    generation: int = 0,
) -> dict[int, list[bytes]]:
    """The messages for each detect partition: the events it needs, then the progress."""
    chunks: dict[int, list[_Outgoing]] = {p: [_Outgoing()] for p in range(partitions)}
    for event in events:
        encoded: str | None = None
        placed: dict[int, int] = {}  # partition -> index of this event in its current chunk
        for name, key in routes(detectors, event, on_error):
            partition = partition_of(state_key(name, key), partitions)
            if encoded is None:
                encoded = event.model_dump_json(exclude_none=True)
            current = chunks[partition][-1]
            if partition not in placed:
                if current.events and current.size + len(encoded) > MAX_MESSAGE_BYTES:
                    current = _Outgoing()
                    chunks[partition].append(current)
                placed[partition] = len(current.events)
                current.events.append(encoded)
                current.size += len(encoded)
            current.routes.append((placed[partition], name, key))
    tick = {str(p): at.isoformat() for p, at in progress.items()}
    # The progress rides on each partition's last message: it covers that partition's events.
    return {
        partition: [
            _encode(chunk, tick if chunk is outgoing[-1] else {}, generation) for chunk in outgoing
        ]
        for partition, outgoing in chunks.items()
    }


def _encode(chunk: _Outgoing, tick: dict[str, str], generation: int) -> bytes:
    # The events are spliced in as the JSON they already are (not re-encoded as strings), so
    # the whole message is validated in one pydantic call on the other side.
    rest = json.dumps({"routes": chunk.routes, "tick": tick, "gen": generation})
    return ('{"events":[' + ",".join(chunk.events) + "]," + rest[1:]).encode()


class _Message(BaseModel):
    events: list[AccessEvent]
    routes: list[tuple[int, str, str]]
    tick: dict[int, AwareDatetime]
    # Kafka's generation id is an int32: a larger one (a stranger, a bug) would fence every
    # later claim and stall the clock for good.
    gen: int = Field(default=0, ge=0, le=2**31 - 1)


def decode(raw: bytes) -> Forwarded:
    message = _Message.model_validate_json(raw)
    return Forwarded(message.events, message.routes, message.tick, message.gen)


def tick_only(progress: Mapping[int, datetime], generation: int = 0) -> bytes:
    """The progress alone, for partitions while the sources are quiet."""
    tick = {str(p): at.isoformat() for p, at in progress.items()}
    return _encode(_Outgoing(), tick, generation)


def alert_parts(alerts: Iterable[Alert], partitions: int) -> dict[int, bytes]:
    """Alerts grouped by the partition of their incident: one message per partition."""
    grouped: dict[int, list[str]] = {}
    for alert in alerts:
        grouped.setdefault(partition_of(alert.alert_id, partitions), []).append(
            alert.model_dump_json()
        )
    return {p: ("[" + ",".join(parts) + "]").encode() for p, parts in grouped.items()}


def decode_alert_parts(raw: bytes) -> list[Alert]:
    return _ALERTS.validate_json(raw)

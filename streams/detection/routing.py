"""Messages of the internal detect topic: one per (event, detector that wants it).

Keyed by ``detector|key`` so every event of one key reaches the same partition, in order, and the
table holding that key's state lives on the same partition (Faust's partitioner on both sides,
with the same JSON-serialised key).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detectors.base import Detector
from detectors.models import AccessEvent
from detectors.runner import routes, state_key
from streams.detection.watermark import decode_tick


@dataclass(frozen=True)
class Routed:
    detector: str
    key: str
    event: AccessEvent

    @property
    def message_key(self) -> str:
        return state_key(self.detector, self.key)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "detector": self.detector,
                "key": self.key,
                "event": self.event.model_dump(mode="json", exclude_none=True),
            }
        ).encode()


def route(
    detectors: dict[str, Detector[Any]],
    event: AccessEvent,
    on_error: Callable[[str, str, Exception], None],
) -> list[Routed]:
    """One message per detector that wants the event, keyed by that detector's key."""
    return [Routed(name, key, event) for name, key in routes(detectors, event, on_error)]


def decode(raw: bytes) -> Routed | dict[int, datetime]:
    """A routed event, or a tick: source partition -> progress (``watermark``)."""
    data = json.loads(raw)
    if "tick" in data:
        return decode_tick(data)
    event = AccessEvent.model_validate_json(json.dumps(data["event"]))
    return Routed(data["detector"], data["key"], event)

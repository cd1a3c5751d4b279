"""A dead letter always reaches the topic: whole when it fits, else as a reference."""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

from detectors.policy import ExportPolicy, PrivacyPolicy
from streams.backoff import Backoff
from streams.decode import Reason, Rejected
from streams.ingest import DeadLetters, Letter
from streams.keys import Key
from streams.minimise import Minimiser
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings


@dataclass
class Message:
    value: bytes
    topic: str = "access-events"
    partition: int = 2
    offset: int = 41
    key: bytes | None = None
    timestamp: float | None = 1_700_000_000.0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Topic:
    """Refuses what is over ``limit`` bytes, as a broker with a lower limit than ours would."""

    def __init__(self, limit: int):
        self.limit = limit
        self.sent: list[tuple[bytes, dict[str, bytes]]] = []

    async def send(self, key: Any, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        async def delivered() -> None:
            if len(value) > self.limit:
                raise MessageSizeTooLargeError("too large")
            self.sent.append((value, dict(headers)))

        return delivered()


def _send(value: bytes, limit: int, max_bytes: int) -> tuple[bytes, dict[str, bytes]]:
    topic = Topic(limit)
    settings = Settings(dlq_max_message_bytes=max_bytes)
    minimiser = Minimiser(PrivacyPolicy(), ExportPolicy(), Pseudonymizer(Key("k1", b"k" * 32)))
    letters = DeadLetters(topic, settings, Backoff(initial=0), minimiser)
    letter = Letter(Message(value), Rejected(Reason.OVERSIZED, "too big"))
    asyncio.run(letters.send([letter]))
    assert len(topic.sent) == 1
    return topic.sent[0]


def test_a_letter_that_fits_goes_whole() -> None:
    value, headers = _send(b"x" * 70_000, limit=1_000_000, max_bytes=512 * 1024)
    assert value == b"x" * 70_000
    assert "guetteur.payload" not in headers


def test_a_letter_over_our_limit_goes_as_a_reference() -> None:
    raw = b"y" * 600_000
    value, headers = _send(raw, limit=1_000_000, max_bytes=512 * 1024)
    assert headers["guetteur.payload"] == b"reference"
    reference = json.loads(value)["dead_letter_reference"]
    assert reference == {
        "topic": "access-events",
        "partition": 2,
        "offset": 41,
        "bytes": 600_000,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "prefix": "y" * 256,
    }


def test_a_letter_the_broker_refuses_whole_goes_as_a_reference() -> None:
    value, headers = _send(b"z" * 200_000, limit=100_000, max_bytes=512 * 1024)
    assert headers["guetteur.payload"] == b"reference"
    assert json.loads(value)["dead_letter_reference"]["bytes"] == 200_000

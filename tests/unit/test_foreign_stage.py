"""The worker's stage for FHIR and ATNA messages, without Kafka: what it publishes to the
events topic, what it dead-letters, and that nothing a message holds makes it raise (an
exception in the agent would have Faust commit the whole batch unprocessed)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from adapters.common import Translation
from adapters.table import MappingPolicy
from detectors.models import Role
from detectors.policy import ExportPolicy, PrivacyPolicy
from streams.backoff import Backoff
from streams.dead_letters import MAPPED_FROM, DeadLetter, replay_topic
from streams.foreign import Format, TranslateStage, formats
from streams.ingest import DeadLetters
from streams.keys import Key
from streams.minimise import Minimiser
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from tests.unit.test_dead_letter_sizes import Message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SETTINGS = Settings(topic_events="events")
READ = (FIXTURES / "fhir/balp/AuditEvent-ex-auditBasicReadServer.json").read_bytes()
TABLE = MappingPolicy(person_role=Role.PRACTITIONER)


class Topic:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, bytes, dict[str, bytes]]] = []

    async def send(self, key: Any, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        async def delivered() -> None:
            self.sent.append((key, value, dict(headers)))

        return delivered()


def run(form: Format, *values: bytes) -> tuple[Topic, Topic]:
    events, dlq = Topic(), Topic()
    minimiser = Minimiser(PrivacyPolicy(), ExportPolicy(), Pseudonymizer(Key("k1", b"k" * 32)))
    letters = DeadLetters(dlq, SETTINGS, Backoff(initial=0), minimiser)
    stage = TranslateStage(form, TABLE, events, letters)
    messages = [Message(v, topic=form.topic, offset=n) for n, v in enumerate(values)]
    asyncio.run(stage.handle(messages))
    return events, dlq


def test_mapped_events_go_to_the_events_topic_keyed_by_practice_with_their_origin() -> None:
    fhir = formats(SETTINGS)[0]
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": json.loads(READ)}, {"resource": {"resourceType": "Patient"}}],
    }
    events, dlq = run(fhir, READ, json.dumps(bundle).encode(), b"\x00" * 10, b"[" * 100_000)
    assert [(key, json.loads(value)["event_id"]) for key, value, _ in events.sent] == [
        (b"Device/ex-device", "fhir:Device/ex-device/ex-auditBasicReadServer"),
        (
            b"Device/ex-device",
            "fhir:Device/ex-device/ex-auditBasicReadServer",
        ),  # the same record: same id
    ]
    assert [headers[MAPPED_FROM] for _, _, headers in events.sent] == [
        b"events-fhir:2:0",
        b"events-fhir:2:1",
    ]
    details = [headers["guetteur.detail"].decode() for _, _, headers in dlq.sent]
    assert details == [
        "fhir: Bundle.entry[1].resource: 'Patient' is not an AuditEvent",
        "fhir: message: not valid JSON (Expecting value: line 1 column 1 (char 0))",
        "fhir: message: not valid JSON (nested too deeply)",
    ]
    # The Bundle's bad entry is dead-lettered alone: replaying it replays nothing else.
    assert json.loads(dlq.sent[0][1]) == {"resourceType": "Patient"}
    assert {headers["guetteur.reason"] for _, _, headers in dlq.sent} == {b"unmappable"}


def test_a_mapping_that_raises_dead_letters_the_message_instead() -> None:
    def broken(raw: bytes, table: MappingPolicy) -> Translation:
        raise KeyError("a bug of ours")

    events, dlq = run(Format("fhir", "events-fhir", broken), READ)
    assert events.sent == []
    [(_, value, headers)] = dlq.sent
    assert value == READ
    assert b"mapping failed (KeyError)" in headers["guetteur.detail"]


def test_a_foreign_dead_letter_is_replayed_to_its_own_topic() -> None:
    def letter(source: str) -> DeadLetter:
        return DeadLetter(0, 0, None, b"", {"source_topic": source})

    assert replay_topic(SETTINGS, letter("events-fhir")) == "events-fhir"
    assert replay_topic(SETTINGS, letter("events-atna")) == "events-atna"
    assert replay_topic(SETTINGS, letter("events")) == "events"
    assert replay_topic(SETTINGS, letter("somewhere-else")) == "events"


def test_atna_messages_map_or_are_dead_lettered_whatever_they_hold() -> None:
    atna = formats(SETTINGS)[1]
    good = (FIXTURES / "atna/dcm4chee-patient-record-read.xml").read_bytes()
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><AuditMessage>&b;</AuditMessage>'
    )
    events, dlq = run(atna, b"\xef\xbb\xbf" + good, bomb, b"<" * 2_000_000, b"", good)
    assert len(events.sent) == 2 and events.sent[0][1] == events.sent[1][1]  # same id twice
    reasons = [headers["guetteur.detail"].decode().split(": ", 2)[2] for *_, headers in dlq.sent]
    assert [reason.split(" ")[0] for reason in reasons] == ["XML", "2000000", "no"]

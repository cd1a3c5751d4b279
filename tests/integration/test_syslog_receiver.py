"""The syslog receiver for real: rsyslog (imtcp + omkafka) in front of the stack's Kafka.

Each test runs an rsyslog of its own (its own directory, a free port, a unique topic) on the
stack's Kafka, so it neither needs nor disturbs the stack's receiver. Messages are sent as a
clinical system sends IHE ATNA records: RFC 5424 over TCP, octet-counted frames
(``<length> <message>``), the MSG part a DICOM PS3.15 audit record in XML.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.settings import StackSettings
from streams.stack.rsyslog import RsyslogService
from streams.stack.service import wait_ready
from tests.conftest import RunningStack
from tests.helpers import free_ports

BOM = "\ufeff".encode()
# facility authpriv (10), severity notice (5); MSGID as DICOM PS3.15 asks for audit records.
HEADER = "<85>1 2026-11-25T10:00:00.000+01:00 pacs.example.org guetteur-test 4242 IHE+RFC-3881 - "

Receiver = Callable[[], RsyslogService]


def _audit_xml(patients: int) -> bytes:
    """A DICOM audit message over several lines, with tabs, CR LF and non-ASCII names."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<AuditMessage>",
        '\t<EventIdentification EventActionCode="R" EventDateTime="2026-11-25T10:00:00+01:00"'
        ' EventOutcomeIndicator="0">',
        '\t\t<EventID csd-code="110110" codeSystemName="DCM" originalText="Patient Record"/>',
        "\t</EventIdentification>\r",
        '\t<ActiveParticipant UserID="dr-müller" UserName="Dr. Zoë Müller-Łukasiewicz"'
        ' UserIsRequestor="true"/>',
    ]
    for n in range(patients):
        lines.append(
            f'\t<ParticipantObjectIdentification ParticipantObjectID="PAT-{n:05d}"'
            ' ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">'
            f"<ParticipantObjectName>Élodie Ångström 山田太郎 №{n}</ParticipantObjectName>"
            "</ParticipantObjectIdentification>"
        )
    lines.append("</AuditMessage>")
    return "\n".join(lines).encode()


def _frame(message: bytes) -> bytes:
    """RFC 6587 octet counting (as RFC 5425): the byte length, a space, the message."""
    return f"{len(message)} ".encode() + message


def _send(port: int, *msgs: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"".join(_frame(HEADER.encode() + msg) for msg in msgs))


def _create_topic(stack: RunningStack, topic: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


def _delete_topic(stack: RunningStack, topic: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap)
    try:
        if topic in admin.list_topics():
            admin.delete_topics([topic])
    finally:
        admin.close()


def _read(stack: RunningStack, topic: str, count: int, seconds: float = 90) -> list[bytes]:
    """The topic's first ``count`` values (one partition: in the order rsyslog wrote them)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=stack.settings.kafka_bootstrap, enable_auto_commit=False
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        values: list[bytes] = []
        deadline = time.monotonic() + seconds
        while len(values) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                values.extend(record.value for record in records)
        return values
    finally:
        consumer.close()


@pytest.fixture
def topic(stack: RunningStack) -> Iterator[str]:
    name = f"test-atna-{uuid.uuid4().hex[:10]}"
    yield name
    _delete_topic(stack, name)


@pytest.fixture
def receiver(stack: RunningStack, tmp_path: Path, topic: str) -> Iterator[Receiver]:
    """Starts, when the test says so, an rsyslog of its own writing to ``topic``."""
    settings = StackSettings(
        dir=tmp_path / "stack",
        host=stack.settings.host,
        kafka_port=stack.settings.kafka_port,
        syslog_port=free_ports(1)[0],
        syslog_topic=topic,
    )
    service = RsyslogService(settings)

    def start() -> RsyslogService:
        service.start()
        wait_ready(service, 60, lambda _: None)
        return service

    try:
        yield start
    finally:
        service.stop()


def test_kafka_gets_the_msg_part_byte_for_byte(
    stack: RunningStack, topic: str, receiver: Receiver
) -> None:
    _create_topic(stack, topic)
    service = receiver()
    short = b'<AuditMessage><EventIdentification EventActionCode="E"/></AuditMessage>'
    long = _audit_xml(patients=80)
    assert 19_000 < len(long) < 25_000 and b"\n" in long and b"\r\n" in long
    # The long one as senders of RFC 5424 UTF-8 text do: BOM first.
    _send(service.port, short, BOM + long)

    values = _read(stack, topic, 2)

    assert len(values) == 2, service.log_file.read_text()
    assert values[0] == short
    # rsyslog keeps the BOM: it is part of the MSG (RFC 5424); the consumer strips it.
    assert values[1] == BOM + long
    assert values[1].removeprefix(BOM).decode() == long.decode()


def test_a_message_sent_before_its_topic_exists_is_not_lost(
    stack: RunningStack, topic: str, receiver: Receiver
) -> None:
    service = receiver()  # the topic does not exist yet, and Kafka does not auto-create it
    early = _audit_xml(patients=3)
    _send(service.port, early)
    time.sleep(5)  # rsyslog has handed it to Kafka's client, which finds no topic
    _create_topic(stack, topic)
    later = b"<AuditMessage><later/></AuditMessage>"
    _send(service.port, later)

    values = _read(stack, topic, 2)

    assert sorted(values) == sorted([early, later]), service.log_file.read_text()

"""The syslog receiver for real: rsyslog (imtcp + omkafka) in front of the stack's Kafka.

Each test runs an rsyslog of its own (its own directory, free ports, a unique topic) on the
stack's Kafka, so it neither needs nor disturbs the stack's receiver. Messages are sent as a
clinical system sends IHE ATNA records: RFC 5424 over TCP or TLS (RFC 5425, with the client
certificate the receiver's local CA made), octet-counted frames (``<length> <message>``), the
MSG part a DICOM PS3.15 audit record in XML.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.settings import StackSettings
from streams.stack.pki import LocalPki
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


def _tls_context(service: RsyslogService, *, certificate: bool = True) -> ssl.SSLContext:
    """A sender's: it checks the receiver against the local CA, and shows its own certificate."""
    context = ssl.create_default_context(cafile=str(service.pki.ca_cert))
    if certificate:
        context.load_cert_chain(service.pki.client_cert, service.pki.client_key)
    return context


def _send_tls(service: RsyslogService, context: ssl.SSLContext, *msgs: bytes) -> str:
    """Sends over TLS, as an ATNA secure node does; returns the TLS version agreed on."""
    host = service.settings.host
    with (
        socket.create_connection((host, service.tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as conn,
    ):
        conn.sendall(b"".join(_frame(HEADER.encode() + msg) for msg in msgs))
        version = str(conn.version())
        # RFC 5425 4.4: the sender closes with a TLS close_notify; the receiver may close
        # without answering with its own, as rsyslog's GnuTLS driver does.
        with contextlib.suppress(ssl.SSLEOFError):
            conn.unwrap()
        return version


def _refused(service: RsyslogService, context: ssl.SSLContext, msg: bytes) -> str:
    """How the receiver turned a TLS sender away: a failed handshake (TLS 1.2), or, in TLS 1.3
    where the client's handshake ends before the server has checked it, an alert or a close
    right after. The receiver never writes otherwise, so waiting for a byte tells."""
    host = service.settings.host
    try:
        with (
            socket.create_connection((host, service.tls_port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host) as conn,
        ):
            conn.sendall(_frame(HEADER.encode() + msg))
            answer = conn.recv(1)
    except TimeoutError:
        pytest.fail("the receiver kept the connection open: the sender was let in")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    assert answer == b"", answer
    return "closed by the receiver"


def _evidence(service: RsyslogService) -> str:
    """What rsyslog says of itself: its log, and its counters (did imtcp take the frame, did
    omkafka hand it to Kafka, did Kafka acknowledge it)."""
    stats = service.stats_file.read_text() if service.stats_file.exists() else "(no counters yet)"
    return f"{service.log_file.read_text()}\n--- counters ---\n{stats[-4000:]}"


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
    plain_port, tls_port = free_ports(2)
    settings = StackSettings(
        dir=tmp_path / "stack",
        host=stack.settings.host,
        kafka_port=stack.settings.kafka_port,
        syslog_port=plain_port,
        syslog_tls_port=tls_port,
        syslog_topic=topic,
    )
    service = RsyslogService(settings)
    service.stats_interval = 2  # counters soon enough to explain a failure

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

    assert len(values) == 2, _evidence(service)
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

    assert sorted(values) == sorted([early, later]), _evidence(service)


def test_tls_with_a_client_certificate_delivers_the_msg_part(
    stack: RunningStack, topic: str, receiver: Receiver
) -> None:
    """RFC 5425 as IHE ATNA asks: mutual authentication, the message as over plain TCP."""
    _create_topic(stack, topic)
    service = receiver()
    short = b'<AuditMessage><EventIdentification EventActionCode="R"/></AuditMessage>'
    long = _audit_xml(patients=80)

    version = _send_tls(service, _tls_context(service), short, BOM + long)

    assert version in {"TLSv1.2", "TLSv1.3"}
    values = _read(stack, topic, 2)
    assert values == [short, BOM + long], _evidence(service)


def test_tls_refuses_senders_without_a_valid_certificate(
    stack: RunningStack, topic: str, receiver: Receiver, tmp_path: Path
) -> None:
    """No certificate, one from another CA, or no TLS at all: nothing reaches Kafka."""
    _create_topic(stack, topic)
    service = receiver()
    refusals: dict[str, str] = {}
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        anonymous = _tls_context(service, certificate=False)
        anonymous.maximum_version = anonymous.minimum_version = version
        refusals[f"no certificate, {version.name}"] = _refused(
            service, anonymous, b"<AuditMessage><anonymous/></AuditMessage>"
        )
    stranger = LocalPki(tmp_path / "another-ca")
    stranger.ensure("127.0.0.1")
    foreign = _tls_context(service, certificate=False)
    foreign.load_cert_chain(stranger.client_cert, stranger.client_key)
    refusals["another CA's certificate"] = _refused(
        service, foreign, b"<AuditMessage><stranger/></AuditMessage>"
    )
    # Plain TCP on the TLS port: the receiver reads a bad TLS record and closes.
    with socket.create_connection((service.settings.host, service.tls_port), timeout=10) as conn:
        conn.sendall(_frame(HEADER.encode() + b"<AuditMessage><plain/></AuditMessage>"))
        reply = b""
        try:
            while chunk := conn.recv(1024):
                reply += chunk
        except ConnectionResetError:
            pass
    assert reply[:1] in {b"", b"\x15"}, reply  # nothing, or a TLS alert record
    # Then one sender with the right certificate: only its message is on the topic.
    marker = b"<AuditMessage><authenticated/></AuditMessage>"
    _send_tls(service, _tls_context(service), marker)

    values = _read(stack, topic, 2, seconds=20)

    assert values == [marker], (refusals, _evidence(service))
    log = service.log_file.read_text()
    assert "peer did not provide a certificate" in log, log
    assert "certificate invalid: signer not found" in log, log

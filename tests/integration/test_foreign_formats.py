"""Health IT's own audit records on the real stack: FHIR AuditEvents posted over HTTP and
published on Kafka, IHE ATNA messages sent over syslog (rsyslog -> Kafka), all mapped, stored
in the access history with patients pseudonymised, detected like native events (the same
alerts ``guetteur detect --format fhir|atna`` finds offline), and what cannot be mapped answered
400 (HTTP) or dead-lettered with the element named (Kafka, syslog), then replayable."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from streams import dead_letters
from streams.cli.main import cli
from streams.console import tokens
from streams.console.api import create_api
from streams.elastic import sync_client
from streams.history.templates import prepare
from streams.keys import Key
from streams.producer import publish
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings, StackSettings
from streams.stack.rsyslog import RsyslogService
from streams.stack.service import wait_ready
from streams.topics import ensure_topics, read_topic
from streams.worker_process import WorkerProcess
from tests.conftest import TEST_KEY, RunningStack
from tests.helpers import free_ports, stored_alerts, stored_history

pytestmark = pytest.mark.integration

FHIR_JSON = {"Content-Type": "application/fhir+json"}

POLICY = """
[mapping.sites."ehr.example.org"]
source = "practice_app"
practice_id = "prac-fhir"

[mapping.sites."practice-lyon"]
practice_id = "prac-atna"
"""
# Three days ago: the care rule's window (one day after the read) has passed, so the worker's
# clock, following the wall clock once the sources are quiet, decides.
READ_AT = (datetime.now(UTC) - timedelta(days=3)).replace(microsecond=0)
PSEUDONYMS = Pseudonymizer(Key("test", TEST_KEY.encode()))


def audit_event(
    who: str, patient: str, resource: str, at: datetime, interaction: str = "read"
) -> dict[str, Any]:
    """An R4 BALP Basic Read/Create, as a FHIR server's BALP interceptor writes it."""
    return {
        "resourceType": "AuditEvent",
        "meta": {
            "profile": ["https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.Read"]
        },
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": "R" if interaction == "read" else "C",
        "recorded": at.isoformat(),
        "outcome": "0",
        "agent": [
            {
                "type": {
                    "coding": [
                        {"code": "110153", "system": "http://dicom.nema.org/resources/ontology/DCM"}
                    ]
                },
                "who": {"reference": "Device/ehr"},
                "requestor": False,
            },
            {"who": {"reference": f"Practitioner/{who}"}, "requestor": True},
        ],
        "source": {"observer": {"identifier": {"value": "ehr.example.org"}}},
        "entity": [
            {"what": {"reference": f"{resource}/r-{patient}"}, "role": {"code": "4"}},
            {"what": {"reference": f"Patient/{patient}"}, "role": {"code": "1"}},
        ],
    }


def r5_read(who: str, patient: str, at: datetime) -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "category": [{"coding": [{"code": "rest"}]}],
        "code": {"coding": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}]},
        "action": "R",
        "occurredDateTime": at.isoformat(),
        "recorded": at.isoformat(),
        "outcome": {"code": {"code": "success"}},
        "patient": {"reference": f"Patient/{patient}"},
        "agent": [{"who": {"reference": f"Practitioner/{who}"}, "requestor": True}],
        "source": {"observer": {"identifier": {"value": "ehr.example.org"}}},
        "entity": [{"what": {"reference": f"MedicationRequest/m-{patient}"}}],
    }


def atna_read(user: str, patient: str, at: datetime | None) -> bytes:
    when = f' EventDateTime="{at.isoformat()}"' if at else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<AuditMessage>
  <EventIdentification EventActionCode="R"{when} EventOutcomeIndicator="0">
    <EventID csd-code="110110" codeSystemName="DCM" originalText="Patient Record"/>
  </EventIdentification>
  <ActiveParticipant UserID="{user}" UserIsRequestor="true" UserTypeCode="1">
    <RoleIDCode csd-code="309343006" codeSystemName="SNOMED-CT" originalText="Physician"/>
  </ActiveParticipant>
  <AuditSourceIdentification AuditEnterpriseSiteID="practice-lyon" AuditSourceID="pacs-1"/>
  <ParticipantObjectIdentification ParticipantObjectID={quoteattr(patient)}
      ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">
    <ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881"/>
  </ParticipantObjectIdentification>
</AuditMessage>""".encode()


@pytest.fixture
def syslog(stack: RunningStack, isolated: Settings, tmp_path: Path) -> Iterator[int]:
    """An rsyslog of this test's own, writing to this test's ATNA topic; its port."""
    ports = free_ports(2)
    settings = StackSettings(
        dir=tmp_path / "syslog",
        host=stack.settings.host,
        kafka_port=stack.settings.kafka_port,
        syslog_port=ports[0],
        syslog_tls_port=ports[1],
        syslog_topic=isolated.atna_topic,
    )
    receiver = RsyslogService(settings)
    receiver.start()
    try:
        wait_ready(receiver, 60, lambda _: None)
        yield settings.syslog_port
    finally:
        receiver.stop()


def send_syslog(port: int, *messages: bytes) -> None:
    """RFC 5424 over TCP, octet-counted frames, as an ATNA secure node sends (minus TLS)."""
    header = b"<85>1 2026-11-25T10:00:00+01:00 pacs-1 pacs 42 IHE+RFC-3881 - \xef\xbb\xbf"
    frames = b"".join(f"{len(header + m)} ".encode() + header + m for m in messages)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(frames)


async def post_http(settings: Settings, token: str) -> dict[str, tuple[int, Any]]:
    """What the FHIR endpoint answers: one read, one unmappable, one batch, one transaction."""
    app = create_api(settings, sync_client(settings), PSEUDONYMS)
    client = TestClient(TestServer(app))
    await client.start_server()
    headers = {"Authorization": f"Bearer {token}", **FHIR_JSON}
    unmappable = audit_event("dr-http", "p-x", "Observation", READ_AT)
    unmappable["agent"][1]["requestor"] = False
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": audit_event(
                    "dr-sec", "p-ok", "Appointment", READ_AT - timedelta(hours=2), "create"
                )
            },
            {"resource": audit_event("dr-http", "p-ok", "Observation", READ_AT)},
            {"resource": {"resourceType": "AuditEvent", "recorded": "today"}},
        ],
    }
    answers: dict[str, tuple[int, Any]] = {}
    try:
        for name, path, body in [
            ("read", "/fhir/AuditEvent", audit_event("dr-http", "p-http", "Observation", READ_AT)),
            ("unmappable", "/fhir/AuditEvent", unmappable),
            ("batch", "/fhir", batch),
        ]:
            response = await client.post(path, data=json.dumps(body), headers=headers)
            answers[name] = (response.status, await response.json())
            answers[name + ":location"] = (response.status, response.headers.get("Location"))
        no_token = await client.post(
            "/fhir/AuditEvent", data=b"{}", headers={"Content-Type": "application/fhir+json"}
        )
        answers["no token"] = (no_token.status, None)
        xml = await client.post(
            "/fhir/AuditEvent", data=b"<x/>", headers={**headers, "Content-Type": "application/xml"}
        )
        answers["xml"] = (xml.status, await xml.json())
    finally:
        await client.close()
    return answers


def offline(fmt: str, path: Path, policy: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    result = CliRunner().invoke(
        cli, ["detect", "--format", fmt, "--policy", str(policy), str(path)]
    )
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {a["alert_id"]: (a["rule_id"], tuple(a["event_ids"])) for a in found}


def test_fhir_and_atna_records_are_ingested_and_detected_like_native_events(
    isolated: Settings, syslog: int, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    ensure_topics(isolated)
    es = sync_client(isolated)
    prepare(es, isolated)
    token = tokens.create(es, isolated, "fhir-server", tokens.Role.PRODUCER)
    log = tmp_path / "worker.log"
    kafka_records = [
        json.dumps(r5_read("dr-kafka", "p-kafka", READ_AT)).encode(),
        json.dumps({**r5_read("dr-kafka", "p-k2", READ_AT), "recorded": "yesterday"}).encode(),
    ]
    atna_messages = [
        atna_read("dr-atna", "PAT-ATNA^^^&1.2.3&ISO", READ_AT),
        atna_read("dr-atna", "PAT-2", None),
    ]
    with WorkerProcess(log, env={"GUETTEUR_POLICY_FILE": str(policy)}) as worker:
        # The console maps with the worker's policy: a record it accepts, the worker maps.
        console = isolated.model_copy(update={"policy_file": policy})
        answers = asyncio.run(post_http(console, token))
        publish(isolated, isolated.fhir_topic, kafka_records)
        send_syslog(syslog, *atna_messages)

        # HTTP: answered as a FHIR server answers.
        assert answers["read"][0] == 201
        location = answers["read:location"][1]
        assert "/fhir/AuditEvent/" in location
        status, outcome = answers["unmappable"]
        assert status == 400 and outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == ["AuditEvent.agent"]
        status, response = answers["batch"]
        assert status == 200 and response["type"] == "batch-response"
        assert [e["response"]["status"] for e in response["entry"]] == [
            "201 Created",
            "201 Created",
            "400 Bad Request",
        ]
        assert answers["no token"][0] == 401 and answers["xml"][0] == 415

        # Every mapped access is in the history, its patient pseudonymised.
        expected_patients = {"p-http", "p-ok", "p-kafka", "PAT-ATNA^^^&1.2.3&ISO"}

        def has(count: int, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            found: dict[str, Any] = {}
            deadline = time.monotonic() + 120
            while len(found) < count and time.monotonic() < deadline:
                assert worker.alive(), log.read_text()[-3000:]
                time.sleep(1)
                found = read()
            return found

        docs = has(5, lambda: stored_history(es, isolated))
        assert len(docs) == 5, sorted(docs)
        text = json.dumps(docs)
        assert [raw for raw in expected_patients if raw in text] == []
        stored_patients = {doc["health"]["patient"]["pseudonym"] for doc in docs.values()}
        assert stored_patients == {PSEUDONYMS.pseudonym(p) for p in expected_patients}
        providers = sorted(doc["event"]["provider"] for doc in docs.values())
        assert providers == ["atna", *["practice_app"] * 4]

        # No care relationship: p-http (FHIR over HTTP), p-kafka (Kafka, R5), the ATNA patient
        # (syslog); p-ok had an appointment booked, so its read raises nothing.
        found = has(3, lambda: stored_alerts(es, isolated))
        care = [a for a in found.values() if a["rule_id"] == "access.no_care_relationship"]
        assert sorted((a["practice_id"], a["actor_id"]) for a in care) == [
            ("prac-atna", "dr-atna"),
            ("prac-fhir", "dr-http"),
            ("prac-fhir", "dr-kafka"),
        ]
        # The Location the sender was given names the access in the history.
        assert f"fhir:{location.rsplit('/', 1)[1]}" in docs

    # Unmappable records from Kafka and syslog are dead letters naming the element.
    letters = dead_letters.read_all(isolated, timeout=10)
    details = sorted(letter.headers["detail"] for letter in letters)
    assert [detail.split(": ", 2)[:2] for detail in details] == [
        ["atna", "AuditMessage/EventIdentification/@EventDateTime"],
        ["fhir", "AuditEvent.recorded"],
    ], details

    # Offline, the same records give the same alerts.
    fhir_file = tmp_path / "fhir.ndjson"
    http_records = [
        audit_event("dr-http", "p-http", "Observation", READ_AT),
        audit_event("dr-sec", "p-ok", "Appointment", READ_AT - timedelta(hours=2), "create"),
        audit_event("dr-http", "p-ok", "Observation", READ_AT),
    ]
    fhir_file.write_text(
        "\n".join([*(json.dumps(r) for r in http_records), *(r.decode() for r in kafka_records)])
    )
    atna_file = tmp_path / "atna.xml"
    atna_file.write_bytes(b"\n".join(atna_messages))
    expected = {**offline("fhir", fhir_file, policy), **offline("atna", atna_file, policy)}
    assert {i: (a["rule_id"], tuple(a["event_ids"])) for i, a in found.items()} == expected


def test_the_fhir_endpoint_acknowledges_only_what_kafka_has(isolated: Settings) -> None:
    """A transaction is all or nothing; with Kafka unreachable the sender gets 503 (and
    retries), never a 201 for a record that exists nowhere."""
    ensure_topics(isolated)
    es = sync_client(isolated)
    prepare(es, isolated)
    token = tokens.create(es, isolated, "fhir-server", tokens.Role.PRODUCER)
    auditor = tokens.create(es, isolated, "claire", tokens.Role.AUDITOR)
    good = audit_event("dr-t", "p-t", "Observation", READ_AT)
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": good}, {"resource": {**good, "outcome": "7"}}],
    }
    nowhere = isolated.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_ports(1)[0]}"})

    async def post(settings: Settings, path: str, body: Any, bearer: str) -> tuple[int, Any]:
        app = create_api(settings, es, PSEUDONYMS)
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            headers = {"Authorization": f"Bearer {bearer}", **FHIR_JSON}
            response = await client.post(path, data=json.dumps(body), headers=headers)
            return response.status, await response.json()
        finally:
            await client.close()

    status, outcome = asyncio.run(post(isolated, "/fhir", transaction, token))
    assert status == 400
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.outcome"]
    assert "transaction is refused" in outcome["issue"][0]["diagnostics"]
    transaction["entry"] = transaction["entry"][:1]
    status, response = asyncio.run(post(isolated, "/fhir", transaction, token))
    assert (status, response["type"]) == (200, "transaction-response")
    status, outcome = asyncio.run(post(nowhere, "/fhir/AuditEvent", good, token))
    assert status == 503 and outcome["issue"][0]["code"] == "transient"
    status, _ = asyncio.run(post(isolated, "/fhir/AuditEvent", good, auditor))
    assert status == 403  # reading the history does not let one write to it
    published = list(read_topic(isolated, isolated.fhir_topic, "test-reader", 10))
    assert len(published) == 1 and json.loads(published[0].value)["type"] == "transaction"

    async def capabilities() -> tuple[int, Any]:
        client = TestClient(TestServer(create_api(isolated, es, PSEUDONYMS)))
        await client.start_server()
        try:
            response = await client.get("/fhir/metadata")  # no token: FHIR clients ask first
            return response.status, await response.json()
        finally:
            await client.close()

    status, statement = asyncio.run(capabilities())
    assert (status, statement["resourceType"]) == (200, "CapabilityStatement")
    assert statement["rest"][0]["resource"] == [
        {"type": "AuditEvent", "interaction": [{"code": "create"}]}
    ]


DEEP = b'{"resourceType":"AuditEvent","agent":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HUGE = b'{"resourceType":"AuditEvent","recorded":' + b"9" * 5000 + b"}"
GOOD = audit_event("dr-h", "p-h", "Observation", READ_AT)


def changed(**fields: Any) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


def bundle(**fields: Any) -> bytes:
    return json.dumps({"resourceType": "Bundle", **fields}).encode()


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/fhir/AuditEvent", DEEP, 400, "the body is not JSON"),
        ("/fhir/AuditEvent", HUGE, 400, "the body is not JSON"),
        ("/fhir/AuditEvent", b"[1, 2]", 400, "not a FHIR resource"),
        ("/fhir/AuditEvent", b"\xff\xfe", 400, "the body is not JSON"),
        ("/fhir/AuditEvent", b" " * 1_000_001, 413, "over the size limit"),
        ("/fhir/AuditEvent", changed(agent="dr-h"), 400, "AuditEvent.agent"),
        ("/fhir/AuditEvent", changed(recorded="0001-01-01T00:00:00Z"), 400, "must be between"),
        ("/fhir/AuditEvent", changed(recorded="9999-12-31T23:59:59+14:00"), 400, "timestamp"),
        ("/fhir/AuditEvent", bundle(type="batch"), 400, "resourceType"),
        ("/fhir", bundle(type="searchset"), 400, "Bundle.type"),
        ("/fhir", bundle(type="batch", entry=7), 400, "Bundle.entry"),
    ],
)
def test_hostile_bodies_get_a_fhir_answer_naming_the_problem(
    isolated: Settings, path: str, body: bytes, status: int, says: str
) -> None:
    ensure_topics(isolated)
    es = sync_client(isolated)
    prepare(es, isolated)
    token = tokens.create(es, isolated, "fhir-server", tokens.Role.PRODUCER)

    async def post() -> tuple[int, dict[str, Any]]:
        client = TestClient(TestServer(create_api(isolated, es, PSEUDONYMS)))
        await client.start_server()
        try:
            headers = {"Authorization": f"Bearer {token}", **FHIR_JSON}
            response = await client.post(path, data=body, headers=headers)
            return response.status, await response.json()
        finally:
            await client.close()

    answered, outcome = asyncio.run(post())
    assert answered == status, outcome
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert says in issue["diagnostics"] + " ".join(issue.get("expression", []))
    assert list(read_topic(isolated, isolated.fhir_topic, "test-reader", 5)) == []

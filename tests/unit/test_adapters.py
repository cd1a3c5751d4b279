"""FHIR AuditEvents and ATNA audit messages, mapped onto the access-event contract.

The fixtures are published examples (``tests/fixtures/SOURCES.md``): the FHIR R4 and R5
specification's AuditEvent examples, the IHE BALP guide's, DICOM PS3.17's and real systems'
ATNA messages. Each maps to exactly the events listed, field by field, or is refused with the
element named; every event mapped is valid against the contract.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from adapters import atna, fhir
from adapters.common import MAX_RECORD_BYTES, Translation
from adapters.table import MappingPolicy, Site
from detectors.models import AccessEvent, Role
from detectors.policy import PolicyError, parse_policy

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# What a deployment would write in its policy file's [mapping] section: its users are
# practitioners unless listed, and the HL7 test server stands for one practice.
TABLE = MappingPolicy(
    person_role=Role.PRACTITIONER,
    sites={
        "hl7connect.healthintersections.com.au": Site(
            source="practice_app", practice_id="practice-hl7"
        )
    },
)

# (event_id, timestamp, action, outcome, actor id, role, ip, patient_id, data_category,
#  purpose, source, practice_id) per event; or (element, start of the problem) per refusal.
EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "atna/dcm4chee-export-xds-rest.xml": [
        (
            "atna:1cd2364ad8c0bdfa30598a8bbbabef7a",
            "2024-08-21T15:16:17.167000+02:00",
            "export",
            "failure",
            "127.0.0.1",
            "service",
            "127.0.0.1",
            "CR3^^^&1.3.6.1.4.1.21367.2005.13.20.1000&ISO",
            None,
            None,
            "atna",
            "dcm4chee-arc",
        )
    ],
    "atna/dcm4chee-patient-record-read.xml": [
        (
            "atna:540938853f0a0e4f9a906d9d30483fc3",
            "2024-09-01T18:58:02.822000+02:00",
            "view",
            "success",
            "PAMSimulator|IHE",
            "service",
            None,
            "P11^^^SYS&1.2.3&ISO",
            "medical",
            None,
            "atna",
            "dcm4chee-arc",
        )
    ],
    "atna/dcm4chee-query-pdq-hl7.xml": [
        ("AuditMessage/EventIdentification/@EventDateTime", "missing (required by DICOM PS3.15)")
    ],
    "atna/dcm4chee-query-qido-rs.xml": [
        (
            "atna:e2b3ffa6167265180fc577c7a5fc10f0",
            "2025-03-04T16:16:11.168000+01:00",
            "search",
            "success",
            "127.0.0.1",
            "practitioner",
            "127.0.0.1",
            None,
            None,
            None,
            "atna",
            "dcm4chee-arc",
        )
    ],
    "atna/dcm4chee-user-authentication-login.xml": [
        (
            "atna:21295c5c641ac188585f1bd9a539a3fe",
            "2017-01-26T17:28:59.553000+01:00",
            "login",
            "success",
            "admin",
            "practitioner",
            "127.0.0.1",
            None,
            None,
            None,
            "atna",
            "dcm4chee-arc",
        )
    ],
    "atna/dicom-ps3.17-ww1-instances-transferred.xml": [
        (
            "AuditMessage/EventIdentification/@EventDateTime",
            "a date-time without a UTC offset (its ti",
        )
    ],
    "atna/ihe-wiki-user-authentication-login.xml": [
        (
            "atna:243e96fb2b6519bae10c2897b275e668",
            "2013-10-17T15:12:04.287000-06:00",
            "login",
            "success",
            "farley.granger@wb.com",
            "practitioner",
            None,
            None,
            None,
            None,
            "atna",
            "End User",
        )
    ],
    "fhir/balp/AuditEvent-ex-auditAuthZconsent-deny.json": [
        ("AuditEvent.subtype/type", "no code in mapping.actions (saw https://")
    ],
    "fhir/balp/AuditEvent-ex-auditAuthZconsent.json": [
        ("AuditEvent.subtype/type", "no code in mapping.actions (saw https://")
    ],
    "fhir/balp/AuditEvent-ex-auditBasicCreateServer.json": [
        (
            "fhir:myMachine.example.org/ex-auditBasicCreateServer",
            "2020-04-29T09:49:00+00:00",
            "create",
            "success",
            "John Smith",
            "practitioner",
            "2001:db8:85a3::8a2e:370:7334",
            "ex-patient",
            None,
            None,
            "fhir",
            "myMachine.example.org",
        )
    ],
    "fhir/balp/AuditEvent-ex-auditBasicDeleteServer.json": [
        (
            "fhir:Device/ex-device/ex-auditBasicDeleteServer",
            "2020-04-29T09:49:00+00:00",
            "delete",
            "success",
            "John Smith",
            "practitioner",
            "2001:db8:85a3::8a2e:370:7334",
            "ex-patient",
            None,
            None,
            "fhir",
            "Device/ex-device",
        )
    ],
    "fhir/balp/AuditEvent-ex-auditBasicQueryGetServer.json": [
        (
            "fhir:Device/ex-device/ex-auditBasicQueryGetServer",
            "2020-04-29T09:49:00+00:00",
            "search",
            "success",
            "John Smith",
            "practitioner",
            "2001:db8:85a3::8a2e:370:7334",
            "ex-patient",
            "medical",
            None,
            "fhir",
            "Device/ex-device",
        )
    ],
    "fhir/balp/AuditEvent-ex-auditBasicReadClient.json": [
        (
            "fhir:myMachine.example.org/ex-auditBasicReadClient",
            "2020-04-29T09:49:00+00:00",
            "view",
            "success",
            "John Smith",
            "practitioner",
            "2001:db8:85a3::8a2e:370:7334",
            "ex-patient",
            None,
            None,
            "fhir",
            "myMachine.example.org",
        )
    ],
    "fhir/balp/AuditEvent-ex-auditBasicReadNoPatient.json": [
        (
            "fhir:Device/ex-device/ex-auditBasicReadNoPatient",
            "2020-04-29T09:49:00+00:00",
            "view",
            "success",
            "John Smith",
            "practitioner",
            "2001:db8:85a3::8a2e:370:7334",
            None,
            None,
            None,
            "fhir",
            "Device/ex-device",
        )
    ],
    "fhir/balp/AuditEvent-ex-auditBasicReadServer.json": [
        (
            "fhir:Device/ex-device/ex-auditBasicReadServer",
            "2020-04-29T09:49:00+00:00",
            "view",
            "success",
            "John Smith",
            "practitioner",
            "2001:db8:85a3::8a2e:370:7334",
            "ex-patient",
            None,
            None,
            "fhir",
            "Device/ex-device",
        )
    ],
    "fhir/balp/AuditEvent-ex-auditBasicUpdate1.json": [
        (
            "fhir:Device/ex-device/ex-auditBasicUpdate1",
            "2020-04-29T09:49:00+00:00",
            "update",
            "success",
            "Betty Jones",
            "practitioner",
            "2001:db8:85a3::8a2e:370:7334",
            "ex-patient",
            None,
            None,
            "fhir",
            "Device/ex-device",
        )
    ],
    "fhir/r4/auditevent-example-disclosure.json": [
        (
            "fhir:Watchers Accounting of Disclosures Application/example-disclosure",
            "2013-09-22T00:08:00+00:00",
            "export",
            "success",
            "SomeIdiot@nowhere",
            "practitioner",
            None,
            "example",
            "identity",
            None,
            "fhir",
            "Watchers Accounting of Disclosures Application",
        )
    ],
    "fhir/r4/auditevent-example-error.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-error",
            "2017-09-07T23:42:24+00:00",
            "create",
            "failure",
            "95",
            "practitioner",
            None,
            None,
            None,
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r4/auditevent-example-login.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-login",
            "2013-06-20T23:41:23+00:00",
            "login",
            "success",
            "95",
            "practitioner",
            "127.0.0.1",
            None,
            None,
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r4/auditevent-example-logout.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-logout",
            "2013-06-20T23:46:41+00:00",
            "logout",
            "success",
            "95",
            "practitioner",
            "127.0.0.1",
            None,
            None,
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r4/auditevent-example-media.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-media",
            "2015-08-27T23:42:24+00:00",
            "export",
            "success",
            "95",
            "practitioner",
            None,
            "e3cdfc81a0d24bd^^^&2.16.840.1.113883.4.2&ISO",
            "document",
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r4/auditevent-example-pixQuery.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-pixQuery",
            "2015-08-26T23:42:24+00:00",
            "search",
            "success",
            "95",
            "practitioner",
            None,
            "e3cdfc81a0d24bd^^^&2.16.840.1.113883.4.2&ISO",
            None,
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r4/auditevent-example-rest.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-rest",
            "2013-06-20T23:42:24+00:00",
            "view",
            "success",
            "95",
            "practitioner",
            None,
            "example",
            "identity",
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r4/auditevent-example-search.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-search",
            "2015-08-22T23:42:24+00:00",
            "search",
            "success",
            "95",
            "practitioner",
            None,
            None,
            "medical",
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r4/auditevent-example.json": [
        ("AuditEvent.subtype/type", "no code in mapping.actions (saw http://d")
    ],
    "fhir/r5/auditevent-example-disclosure.json": [
        (
            "fhir:Watchers Accounting of Disclosures Application/example-disclosure",
            "2013-09-22T00:08:00+00:00",
            "export",
            "success",
            "SomeIdiot@nowhere",
            "practitioner",
            None,
            "example",
            "identity",
            None,
            "fhir",
            "Watchers Accounting of Disclosures Application",
        )
    ],
    "fhir/r5/auditevent-example-error.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-error",
            "2017-09-07T23:42:24+00:00",
            "create",
            "failure",
            "95",
            "practitioner",
            None,
            None,
            None,
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r5/auditevent-example-login.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-login",
            "2013-06-20T23:41:23+00:00",
            "login",
            "success",
            "95",
            "practitioner",
            None,
            None,
            None,
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r5/auditevent-example-logout.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-logout",
            "2013-06-20T23:46:41+00:00",
            "logout",
            "success",
            "95",
            "practitioner",
            "127.0.0.1",
            None,
            None,
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r5/auditevent-example-media.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-media",
            "2015-08-27T23:42:24+00:00",
            "export",
            "success",
            "95",
            "practitioner",
            None,
            "e3cdfc81a0d24bd^^^&2.16.840.1.113883.4.2&ISO",
            "document",
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r5/auditevent-example-pixQuery.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-pixQuery",
            "2015-08-26T23:42:24+00:00",
            "search",
            "success",
            "95",
            "practitioner",
            None,
            "e3cdfc81a0d24bd^^^&2.16.840.1.113883.4.2&ISO",
            None,
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r5/auditevent-example-rest.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-rest",
            "2013-06-20T23:42:24+00:00",
            "view",
            "success",
            "95",
            "practitioner",
            None,
            "example",
            "identity",
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r5/auditevent-example-search.json": [
        (
            "fhir:hl7connect.healthintersections.com.au/example-search",
            "2015-08-22T23:42:24+00:00",
            "search",
            "success",
            "95",
            "practitioner",
            None,
            None,
            "medical",
            None,
            "practice_app",
            "practice-hl7",
        )
    ],
    "fhir/r5/auditevent-example.json": [
        ("AuditEvent.code/category", "no code in mapping.actions (saw http://d")
    ],
}


def translate(path: Path, table: MappingPolicy = TABLE) -> Translation:
    if path.suffix == ".json":
        return fhir.translate(path.read_bytes(), table)
    return atna.translate(path.read_bytes(), table)


def row(event: dict[str, Any]) -> tuple[Any, ...]:
    actor = event["actor"]
    return (
        event["event_id"],
        event["timestamp"],
        event["action"],
        event["outcome"],
        actor["id"],
        actor["role"],
        actor.get("ip"),
        event.get("patient_id"),
        event.get("data_category"),
        event.get("purpose"),
        event["source"],
        event.get("practice_id"),
    )


def test_every_fixture_is_listed() -> None:
    on_disk = {
        str(path.relative_to(FIXTURES))
        for path in FIXTURES.rglob("*")
        if path.suffix in (".json", ".xml")
    }
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_published_example_maps_to_the_expected_events(name: str) -> None:
    result = translate(FIXTURES / name)
    expected = EXPECTED[name]
    if result.events:
        assert [row(event) for event in result.events] == expected
        assert result.refusals == []
        for event in result.events:  # what the ingest path will check: the contract
            AccessEvent.model_validate_json(json.dumps(event))
    else:
        [refusal] = result.refusals
        [(element, problem)] = expected
        assert refusal.element == element
        assert refusal.problem.startswith(problem)
        assert refusal.original == (FIXTURES / name).read_bytes()  # kept whole, for a replay


def test_mapped_events_keep_what_they_came_from_but_no_patient_identifier() -> None:
    [event] = translate(FIXTURES / "fhir/balp/AuditEvent-ex-auditBasicQueryGetServer.json").events
    attributes = event["attributes"]["fhir"]
    assert attributes["version"] == "R4"
    assert attributes["id"] == "ex-auditBasicQueryGetServer"
    assert "http://hl7.org/fhir/restful-interaction|search" in attributes["type"]
    assert "ex-patient" not in json.dumps(event["attributes"])
    [event] = translate(FIXTURES / "atna/dcm4chee-patient-record-read.xml").events
    assert event["attributes"]["atna"]["type"] == ["DCM|110110"]
    assert "P11" not in json.dumps(event["attributes"])


def test_without_a_person_role_a_record_naming_no_job_role_is_refused() -> None:
    """ "human user" is not a job: the default refuses rather than guess practitioner."""
    result = translate(FIXTURES / "fhir/r4/auditevent-example-rest.json", MappingPolicy())
    [refusal] = result.refusals
    assert refusal.element == "AuditEvent.agent[0].type/role"
    assert "extra-security-role-type|humanuser" in refusal.problem
    assert "mapping.person_role" in refusal.problem
    listed = MappingPolicy(actor_roles={"95": Role.SECRETARY})
    [event] = translate(FIXTURES / "fhir/r4/auditevent-example-rest.json", listed).events
    assert event["actor"] == {"id": "95", "role": "secretary"}


def read_event(patients: list[str], **extra: Any) -> dict[str, Any]:
    """An R4 BALP-style read of an Observation by a practitioner."""
    return {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": "2026-11-20T09:30:00+01:00",
        "outcome": "0",
        "agent": [
            {
                "type": {"coding": [{"code": "PROV"}]},
                "who": {"reference": "Practitioner/dr-7"},
                "requestor": True,
                "network": {"address": "10.0.0.7", "type": "2"},
                "purposeOfUse": [{"coding": [{"code": "TREAT"}]}],
            }
        ],
        "source": {"observer": {"identifier": {"value": "ehr.example.org"}}},
        "entity": [
            {"what": {"reference": "Observation/o-1"}},
            *({"what": {"reference": f"Patient/{p}"}, "role": {"code": "1"}} for p in patients),
        ],
        **extra,
    }


def test_one_audit_event_naming_several_patients_is_one_access_each_with_stable_ids() -> None:
    raw = json.dumps(read_event(["p-1", "p-2", "p-1"])).encode()
    first = fhir.translate(raw, MappingPolicy()).events
    assert [e["patient_id"] for e in first] == ["p-1", "p-2"]
    ids = [e["event_id"] for e in first]
    assert len(set(ids)) == 2 and all(i.startswith("fhir:") for i in ids)
    # The same record sent again (re-indented: a retry through another client) keeps its ids.
    again = fhir.translate(
        json.dumps(read_event(["p-1", "p-2", "p-1"]), indent=2).encode(), TABLE
    ).events
    assert [e["event_id"] for e in again] == ids
    other = fhir.translate(json.dumps(read_event(["p-3"])).encode(), MappingPolicy()).events
    assert other[0]["event_id"] not in ids
    event = first[0]
    assert event["actor"] == {"id": "dr-7", "role": "practitioner", "ip": "10.0.0.7"}
    assert (event["action"], event["data_category"], event["purpose"]) == (
        "view",
        "medical",
        "care",
    )
    assert (event["source"], event["practice_id"]) == ("fhir", "ehr.example.org")


def test_a_batch_bundle_maps_its_good_entries_and_refuses_each_bad_one_alone() -> None:
    bad = read_event(["p-1"], recorded="yesterday")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": read_event(["p-1"])},
            {"resource": bad},
            {"resource": {"resourceType": "Patient", "id": "p-1"}},
            {"request": {"method": "POST"}},
        ],
    }
    result = fhir.translate(json.dumps(bundle).encode(), MappingPolicy())
    assert [e["patient_id"] for e in result.events] == ["p-1"]
    assert [r.element for r in result.refusals] == [
        "Bundle.entry[1].resource.recorded",
        "Bundle.entry[2].resource",
        "Bundle.entry[3].resource",
    ]
    assert json.loads(result.refusals[0].original) == bad  # the entry alone, replayable
    assert result.records == 4


def test_a_transaction_bundle_is_all_or_nothing() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": read_event(["p-1"])},
            {"resource": read_event([], recorded="yesterday")},
        ],
    }
    raw = json.dumps(bundle).encode()
    result = fhir.translate(raw, MappingPolicy())
    assert result.events == []
    [refusal] = result.refusals
    assert refusal.original == raw and "transaction is all or nothing" in refusal.problem


def test_r5_specifics_patient_outcome_network_and_authorization() -> None:
    event = {
        "resourceType": "AuditEvent",
        "category": [{"coding": [{"code": "rest"}]}],
        "code": {"coding": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}]},
        "action": "R",
        "occurredDateTime": "2026-11-20T09:30:00+01:00",
        "recorded": "2026-11-20T09:31:00+01:00",
        "outcome": {"code": {"code": "success"}},
        "authorization": [{"coding": [{"code": "HPAYMT"}]}],
        "patient": {"reference": "Patient/p-9"},
        "agent": [
            {"who": {"identifier": {"value": "sec-1"}}, "networkString": "2001:db8::1"},
        ],
        "source": {"observer": {"display": "billing-gw"}},
        "entity": [{"what": {"reference": "Claim/c-1"}}],
    }
    table = MappingPolicy(person_role=Role.SECRETARY)
    [mapped] = fhir.translate(json.dumps(event).encode(), table).events
    assert mapped["timestamp"] == "2026-11-20T09:30:00+01:00"  # occurred, not recorded
    assert mapped["patient_id"] == "p-9"
    assert mapped["actor"] == {"id": "sec-1", "role": "secretary", "ip": "2001:db8::1"}
    assert (mapped["data_category"], mapped["purpose"]) == ("reimbursement", "billing")
    assert mapped["attributes"]["fhir"]["version"] == "R5"


def test_a_query_entity_gives_the_searched_resource_type() -> None:
    query = base64.b64encode(b"GET /fhir/MedicationRequest?patient=p-1").decode()
    event = read_event(["p-1"])
    event["subtype"] = [{"code": "search-type"}]
    event["entity"][0] = {"query": query, "role": {"code": "24"}}
    [mapped] = fhir.translate(json.dumps(event).encode(), MappingPolicy()).events
    assert (mapped["action"], mapped["data_category"]) == ("search", "prescription")


def test_the_mapping_table_extends_the_defaults_and_names_a_bad_key() -> None:
    policy = parse_policy({"mapping": {"roles": {"LOCAL-NURSE": "practitioner"}}})
    assert policy.mapping.roles["LOCAL-NURSE"] == "practitioner"
    assert policy.mapping.roles["PROV"] == "practitioner"  # a default kept
    with pytest.raises(PolicyError, match=r"mapping\.categories\.Observation"):
        parse_policy({"mapping": {"categories": {"Observation": "clinical"}}})
    with pytest.raises(PolicyError, match=r"mapping\.person_roles"):
        parse_policy({"mapping": {"person_roles": "practitioner"}})


ATNA_READ = """<?xml version="1.0" encoding="UTF-8"?>
<AuditMessage>
  <EventIdentification EventActionCode="R" EventDateTime="2026-11-20T10:15:00+01:00"
      EventOutcomeIndicator="0">
    <EventID csd-code="110110" codeSystemName="DCM" originalText="Patient Record"/>
    <PurposeOfUse csd-code="TREAT" codeSystemName="v3-ActReason"/>
  </EventIdentification>
  <ActiveParticipant UserID="ehr" UserIsRequestor="true" UserTypeCode="2">
    <RoleIDCode csd-code="110150" codeSystemName="DCM"/>
  </ActiveParticipant>
  <ActiveParticipant UserID="dr-martin" UserIsRequestor="true" UserTypeCode="1"
      NetworkAccessPointID="10.1.2.3" NetworkAccessPointTypeCode="2">
    <RoleIDCode code="309343006" codeSystemName="SNOMED-CT"/>
  </ActiveParticipant>
  <AuditSourceIdentification AuditEnterpriseSiteID="practice-lyon" AuditSourceID="ehr-1"/>
  <ParticipantObjectIdentification ParticipantObjectID="PAT-1^^^&amp;1.2.3&amp;ISO"
      ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">
    <ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881"/>
  </ParticipantObjectIdentification>
</AuditMessage>
"""


def test_atna_chooses_the_person_over_the_application_and_reads_old_code_attributes() -> None:
    [event] = atna.translate(ATNA_READ.encode(), MappingPolicy()).events
    assert event["actor"] == {"id": "dr-martin", "role": "practitioner", "ip": "10.1.2.3"}
    assert event["patient_id"] == "PAT-1^^^&1.2.3&ISO"
    assert (event["action"], event["data_category"], event["purpose"]) == (
        "view",
        "medical",
        "care",
    )
    assert (event["source"], event["practice_id"]) == ("atna", "practice-lyon")
    # A syslog line (header and BOM included) arriving whole maps the same.
    line = "<85>1 2026-11-20T10:15:00+01:00 ehr-1 ehr - IHE+RFC-3881 - \ufeff" + ATNA_READ
    [whole] = atna.translate(line.encode(), MappingPolicy()).events
    assert whole == event  # event id included: named by the XML, not by how it travelled


@pytest.mark.parametrize(
    ("raw", "element", "problem"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<AuditMessage>&b;</AuditMessage>",
            "message",
            "XML with a DTD or entities",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<AuditMessage>&x;</AuditMessage>",
            "message",
            "XML with a DTD or entities",
        ),
        (b"<AuditMessage>" * 60_000, "message", "not well-formed XML"),
        (b"\xff\xfe<AuditMessage/>", "message", "not UTF-8"),
        (b"hello", "message", "no <AuditMessage>"),
        (b"<AuditMessage/>", "AuditMessage/EventIdentification", "missing"),
        (
            ATNA_READ.replace("+01:00", "").encode(),
            "AuditMessage/EventIdentification/@EventDateTime",
            "a date-time without a UTC offset",
        ),
        (
            ATNA_READ.replace("2026-11-20T10:15:00", "99999-01-01T00:00:00").encode(),
            "AuditMessage/EventIdentification/@EventDateTime",
            "'99999",
        ),
        (
            ATNA_READ.replace(
                'EventOutcomeIndicator="0"', 'EventOutcomeIndicator="1e999"'
            ).encode(),
            "AuditMessage/EventIdentification/@EventOutcomeIndicator",
            "'1e999'",
        ),
        (
            ATNA_READ.replace('UserIsRequestor="true" UserTypeCode="1"', 'UserIsRequestor="false"')
            .replace('UserIsRequestor="true"', 'UserIsRequestor="false"')
            .encode(),
            "AuditMessage/ActiveParticipant",
            "no single participant",
        ),
        (b" " * (MAX_RECORD_BYTES + 1), "message", f"{MAX_RECORD_BYTES + 1} bytes"),
    ],
)
def test_hostile_atna_messages_are_refused_with_the_element(
    raw: bytes, element: str, problem: str
) -> None:
    [refusal] = atna.translate(raw, MappingPolicy()).refusals
    assert (refusal.element, refusal.original) == (element, raw)
    assert problem in refusal.problem


DEEP = b'{"resourceType":"AuditEvent","agent":' + b"[" * 50_000 + b"]" * 50_000 + b"}"


@pytest.mark.parametrize(
    ("raw", "element", "problem"),
    [
        (DEEP, "message", "not valid JSON (nested too deeply)"),
        (
            b'{"resourceType":"AuditEvent","recorded":' + b"9" * 5000 + b"}",
            "message",
            "not valid JSON",
        ),
        (b"[]", "message", "a JSON list"),
        (b'{"resourceType":"Patient"}', "resourceType", "'Patient' is neither"),
        (b'{"resourceType":"Bundle","entry":{}}', "Bundle.entry", "not a list"),
        (b"\xc3\x28", "message", "not UTF-8"),
        (json.dumps(read_event(["p"], recorded="0001-01-01T00:00:00Z")).encode(), "", ""),
        (
            json.dumps(read_event(["p"], recorded="2026-13-45T25:61:00Z")).encode(),
            "AuditEvent.recorded",
            "invalid FHIR R4",
        ),
        (
            json.dumps(read_event(["p"], agent="dr-7")).encode(),
            "AuditEvent.agent",
            "invalid FHIR R4",
        ),
        (
            json.dumps(
                read_event(["p"], agent=[{"who": {"reference": 12}, "requestor": True}])
            ).encode(),
            "AuditEvent.agent[0].who.reference",
            "invalid FHIR R4",
        ),
        (json.dumps(read_event(["p"], outcome="3")).encode(), "AuditEvent.outcome", "'3' is not"),
        (json.dumps(read_event(["p"], action="E")).encode(), "", ""),
        (
            json.dumps({**read_event(["p"]), "subtype": [], "type": {"code": "110100"}}).encode(),
            "AuditEvent.subtype/type",
            "no code in mapping.actions (saw 110100)",
        ),
        (
            json.dumps(
                {
                    **read_event(["p"]),
                    "agent": [read_event([])["agent"][0], read_event([])["agent"][0]],
                }
                | {"agent": [{**read_event([])["agent"][0], "requestor": False}] * 2}
            ).encode(),
            "AuditEvent.agent",
            "no agent has requestor=true",
        ),
        (
            json.dumps(
                {**read_event(["p"]), "entity": [{"what": {"display": "x"}, "role": {"code": "1"}}]}
            ).encode(),
            "AuditEvent.entity[0].what",
            "a patient entity with no",
        ),
    ],
)
def test_hostile_fhir_messages_are_refused_with_the_element(
    raw: bytes, element: str, problem: str
) -> None:
    result = fhir.translate(raw, MappingPolicy())
    if not element:  # maps: the contract's own checks (ingest) judge the rest, e.g. year 1
        assert result.events and not result.refusals
        return
    [refusal] = result.refusals
    assert (refusal.element, refusal.original) == (element, raw)
    assert refusal.problem.startswith(problem)


def test_two_servers_with_the_same_audit_event_id_give_two_accesses() -> None:
    """AuditEvent/1 on one server is not AuditEvent/1 on another: an event id shared by both
    would have the history keep one access and drop the other as a duplicate."""
    first = read_event(["p-1"], id="1")
    second = {**first, "source": {"observer": {"identifier": {"value": "other.example.org"}}}}
    ids = [
        fhir.translate(json.dumps(e).encode(), MappingPolicy()).events[0]["event_id"]
        for e in (first, second)
    ]
    assert ids == ["fhir:ehr.example.org/1", "fhir:other.example.org/1"]


def test_a_date_without_a_time_is_not_a_moment() -> None:
    """period.start "2026-11-20" says which day, not when: the record's own time is used."""
    event = read_event(["p-1"], period={"start": "2026-11-20"})
    [mapped] = fhir.translate(json.dumps(event).encode(), MappingPolicy()).events
    assert mapped["timestamp"] == "2026-11-20T09:30:00+01:00"  # recorded


def test_listed_codes_are_added_to_the_standard_ones() -> None:
    table = parse_policy({"mapping": {"record_events": ["LOCAL-1"], "machine_codes": ["X"]}})
    assert table.mapping.record_events[:2] == ["rest", "110110"]
    assert table.mapping.record_events[-1] == "LOCAL-1"
    assert table.mapping.machine_codes == ["110150", "X"]


def test_an_atna_root_with_a_namespace_prefix_and_purposes_kept_as_codes() -> None:
    prefixed = (
        ATNA_READ.split("?>", 1)[1]
        .replace("<AuditMessage>", '<a:AuditMessage xmlns:a="urn:x">')
        .replace("</AuditMessage>", "</a:AuditMessage>")
        .replace('csd-code="TREAT"', 'csd-code="LOCAL-PURPOSE"')
    )
    [event] = atna.translate(prefixed.encode(), MappingPolicy()).events
    assert event["actor"]["id"] == "dr-martin" and "purpose" not in event
    assert event["attributes"]["atna"]["purpose"] == ["LOCAL-PURPOSE"]


def test_an_update_that_created_the_resource_is_a_creation() -> None:
    """A PUT of a new id: interaction "update", action code C (BALP: PatientCreate)."""
    put = {**read_event(["p-1"]), "subtype": [{"code": "update"}]}
    created = fhir.translate(json.dumps({**put, "action": "C"}).encode(), MappingPolicy())
    updated = fhir.translate(json.dumps({**put, "action": "U"}).encode(), MappingPolicy())
    assert [created.events[0]["action"], updated.events[0]["action"]] == ["create", "update"]
    # A read says R whatever: only a write's own code can make it another write.
    read = fhir.translate(json.dumps({**read_event(["p-1"]), "action": "C"}).encode(), TABLE)
    assert read.events[0]["action"] == "view"


def test_the_client_address_is_the_one_ip_among_the_agents() -> None:
    """BALP puts the client machine's address on a transfer-role agent, not on the user."""
    event = read_event(["p-1"])
    del event["agent"][0]["network"]
    machine = {
        "who": {"display": "ws-12"},
        "requestor": False,
        "network": {"address": "10.9.8.7", "type": "2"},
    }
    server = {
        "who": {"display": "srv"},
        "requestor": False,
        "network": {"address": "https://srv/fhir", "type": "5"},
    }
    event["agent"] += [machine, server]
    [mapped] = fhir.translate(json.dumps(event).encode(), MappingPolicy()).events
    assert mapped["actor"]["ip"] == "10.9.8.7"
    other = {
        "who": {"display": "ws-13"},
        "requestor": False,
        "network": {"address": "10.9.8.8", "type": "2"},
    }
    event["agent"].append(other)  # two machines: which one asked is not guessed
    [mapped] = fhir.translate(json.dumps(event).encode(), MappingPolicy()).events
    assert "ip" not in mapped["actor"]

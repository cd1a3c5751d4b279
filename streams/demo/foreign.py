"""The demo's FHIR server and PACS: audit records in health IT's own forms, beside the stream.

One of the simulated practices also runs a FHIR server (its audit trail: IHE BALP AuditEvents)
and a PACS (IHE ATNA messages over syslog). On the first simulated morning a practitioner reads
an Observation and a prescription of two patients the practice has never seen, and a
radiologist opens a third patient's record: three accesses with no care relationship, raised
like any native event's. One AuditEvent names nobody who asked: it is dead-lettered with the
element. The demo policy's ``[mapping]`` section says what these records' codes mean.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import quoteattr

from adapters import atna, fhir
from adapters.table import MappingPolicy

FHIR_SERVER = "ehr.demo.example"  # its observer; [mapping.sites] in streams/demo/policy.toml
PACS = "pacs.demo.example"  # its AuditSourceID
INTERACTION = "http://hl7.org/fhir/restful-interaction"


@dataclass(frozen=True)
class ForeignRecords:
    fhir: list[bytes]  # one AuditEvent per message, for <events>-fhir
    atna: list[bytes]  # one AuditMessage per syslog message

    def mapped(self, table: MappingPolicy) -> tuple[list[dict[str, Any]], int]:
        """The access events the worker will make of them, and how many it will refuse."""
        events: list[dict[str, Any]] = []
        refused = 0
        for raw in self.fhir:
            translation = fhir.translate(raw, table)
            events += translation.events
            refused += len(translation.refusals)
        for raw in self.atna:
            translation = atna.translate(raw, table)
            events += translation.events
            refused += len(translation.refusals)
        return events, refused


def foreign_records(morning: datetime) -> ForeignRecords:
    read = _audit_event("dr-fhir-07", "P-FHIR-0001", "Observation", morning)
    prescription = _audit_event("dr-fhir-07", "P-FHIR-0002", "MedicationRequest", morning)
    nobody = _audit_event("dr-fhir-07", "P-FHIR-0003", "Condition", morning)
    nobody["agent"][0]["requestor"] = False  # who asked is unknown: refused, never guessed
    return ForeignRecords(
        fhir=[json.dumps(r).encode() for r in (read, prescription, nobody)],
        atna=[_audit_message("rad-pacs-02", "PACS-4711^^^&1.2.250.1.71&ISO", morning)],
    )


def send_syslog(host: str, port: int, messages: list[bytes]) -> None:
    """RFC 5424 over TCP with octet-counted frames, as an ATNA secure node sends them."""
    header = f"<85>1 {datetime.now().astimezone().isoformat()} {PACS} pacs - IHE+RFC-3881 - "
    frames = b"".join(
        f"{len(header.encode()) + len(message)} {header}".encode() + message for message in messages
    )
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(frames)


def _audit_event(who: str, patient: str, resource: str, at: datetime) -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "subtype": [{"system": INTERACTION, "code": "read"}],
        "action": "R",
        "recorded": at.isoformat(),
        "outcome": "0",
        "agent": [
            {"who": {"reference": f"Practitioner/{who}"}, "requestor": True},
            {"who": {"reference": "Device/ehr"}, "requestor": False},
        ],
        "source": {"observer": {"identifier": {"value": FHIR_SERVER}}},
        "entity": [
            {"what": {"reference": f"{resource}/{patient.lower()}-1"}, "role": {"code": "4"}},
            {"what": {"reference": f"Patient/{patient}"}, "role": {"code": "1"}},
        ],
    }


def _audit_message(user: str, patient: str, at: datetime) -> bytes:
    at = at + timedelta(minutes=20)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<AuditMessage>
  <EventIdentification EventActionCode="R" EventDateTime="{at.isoformat()}"
      EventOutcomeIndicator="0">
    <EventID csd-code="110110" codeSystemName="DCM" originalText="Patient Record"/>
  </EventIdentification>
  <ActiveParticipant UserID="{user}" UserIsRequestor="true" UserTypeCode="1">
    <RoleIDCode csd-code="309343006" codeSystemName="SNOMED-CT" originalText="Physician"/>
  </ActiveParticipant>
  <ActiveParticipant UserID="pacs" UserIsRequestor="false" UserTypeCode="2">
    <RoleIDCode csd-code="110150" codeSystemName="DCM" originalText="Application"/>
  </ActiveParticipant>
  <AuditSourceIdentification AuditSourceID="{PACS}"/>
  <ParticipantObjectIdentification ParticipantObjectID={quoteattr(patient)}
      ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">
    <ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881"/>
  </ParticipantObjectIdentification>
</AuditMessage>""".encode()

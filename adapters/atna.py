"""IHE ATNA audit messages (DICOM PS3.15 Annex A.5 ``AuditMessage`` XML) -> access events.

Hospital systems (EHRs, PACS, document registries) send these over syslog (RFC 5424 over TLS,
RFC 5425); the local stack's rsyslog forwards each syslog MSG, the XML, to Kafka. The XML is
parsed by ``defusedxml``, which refuses DTDs and entity expansion (a billion-laughs message
must not take the worker's memory), and mapped as FHIR AuditEvents are: same table, same
refusals naming the element (an XPath-like ``AuditMessage/ActiveParticipant[2]/@UserID``).

Both attribute spellings of a coded value are read: ``csd-code`` (DICOM PS3.15 today) and
``code`` (RFC 3881 and the first IHE ATNA messages, still sent by older systems).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from adapters.common import (
    AUDIT_OUTCOMES,
    Refusal,
    Translation,
    UnmappableError,
    coded,
    content_id,
    decode_text,
    event_ids,
    ip_address,
    listed,
    with_offset,
)
from adapters.table import MappingPolicy, most_sensitive
from detectors.models import Role

_PERSON, _PATIENT = "1", "1"  # ParticipantObjectTypeCode, ParticipantObjectTypeCodeRole
_IP_ADDRESS = "2"  # NetworkAccessPointTypeCode
_SYSTEM = "2"  # UserTypeCode (1: person)
_ROOT = "AuditMessage"
# Where the XML starts: its declaration, else the root element (perhaps namespace-prefixed).
_START = re.compile(r"<\?xml|<(?:[A-Za-z_][\w.-]*:)?AuditMessage\b")


def translate(raw: bytes, table: MappingPolicy) -> Translation:
    """One syslog MSG (or Kafka message): one AuditMessage."""
    try:
        xml = _document(raw)
        # Named by the XML alone: the same message has the same ids whether it came with a
        # syslog header or BOM (rsyslog) or without (a file, a direct Kafka producer).
        events = map_audit_message(_parse(xml), content_id(xml.encode()), table)
    except UnmappableError as exc:
        return Translation(refusals=[Refusal(exc.element, exc.problem, raw)], records=1)
    return Translation(events=events, records=1, mapped=1)


def _document(raw: bytes) -> str:
    """The XML document in a syslog MSG (or a whole syslog line: it starts at its declaration)."""
    text = decode_text(raw, "message")
    found = _START.search(text)
    start = found.start() if found else -1
    if start < 0:
        raise UnmappableError("message", f"no <{_ROOT}> element: not a DICOM audit message")
    return text[start:].strip()


def _parse(xml: str) -> Element:
    try:
        root = fromstring(xml)
    except DefusedXmlException as exc:
        raise UnmappableError("message", f"XML with a DTD or entities is refused ({exc})") from None
    except (ParseError, ValueError, RecursionError) as exc:
        raise UnmappableError("message", f"not well-formed XML ({str(exc)[:200]})") from None
    if _local(root.tag) != _ROOT:
        raise UnmappableError(_local(root.tag), f"the root element is not <{_ROOT}>")
    return root


def map_audit_message(root: Element, base_id: str, table: MappingPolicy) -> list[dict[str, Any]]:
    """The access events one AuditMessage describes (contract JSON), or ``UnmappableError``."""
    event = _one(root, "EventIdentification", _ROOT)
    where = f"{_ROOT}/EventIdentification"
    type_codes = _codes(_children(event, "EventTypeCode")) + _codes(_children(event, "EventID"))
    patients = _patients(root)
    objects = _object_codes(root)
    placed = table.site(_site_names(root), table.atna_source)
    common = {
        "timestamp": _timestamp(_attribute(event, "EventDateTime", where), where),
        "action": _action(event, type_codes, table, where),
        "outcome": _outcome(event, where),
        "actor": _actor(root, table, placed.person_role),
        "data_category": _category(objects, type_codes, table),
        "purpose": table.lookup(table.purposes, _codes(_children(event, "PurposeOfUse"))),
        "source": placed.source,
        "practice_id": placed.practice_id,
        "attributes": {"atna": _attributes(type_codes, objects, root)},
    }
    ids = event_ids(f"atna:{base_id}", len(patients))
    each: list[str | None] = [*patients] or [None]
    return [
        {key: value for key, value in {**common, "event_id": i, "patient_id": p}.items() if value}
        for i, p in zip(ids, each, strict=True)
    ]


def _action(
    event: Element, type_codes: list[tuple[str, str]], table: MappingPolicy, where: str
) -> str:
    found = table.lookup(table.actions, type_codes)
    if found is None and table.is_record_event(type_codes):
        code = event.get("EventActionCode", "")
        found = table.record_actions.get(code)
        if found is None:
            raise UnmappableError(
                f"{where}/@EventActionCode", f"{code!r}: no row in mapping.record_actions"
            )
    if found is None:
        problem = f"no code in mapping.actions (saw {listed(type_codes)})"
        raise UnmappableError(f"{where}/EventID", problem)
    return str(found)


def _timestamp(value: str, where: str) -> str:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UnmappableError(
            f"{where}/@EventDateTime", f"{value[:40]!r} is not a date-time"
        ) from None
    return with_offset(moment, f"{where}/@EventDateTime")


def _outcome(event: Element, where: str) -> str:
    code = _attribute(event, "EventOutcomeIndicator", where)
    if code.strip() not in AUDIT_OUTCOMES:
        raise UnmappableError(
            f"{where}/@EventOutcomeIndicator", f"{code[:20]!r} is not 0, 4, 8 or 12"
        )
    return AUDIT_OUTCOMES[code.strip()]


def _actor(root: Element, table: MappingPolicy, person_role: Role | None) -> dict[str, str]:
    n, participant = _requestor(root, table)
    where = f"{_ROOT}/ActiveParticipant[{n}]"
    user = _attribute(participant, "UserID", where)
    codes = _codes(_children(participant, "RoleIDCode"))
    role = table.actor_roles.get(user) or table.lookup(table.roles, codes)
    if role is None and _is_machine(participant, table):
        role = Role.SERVICE if participant.get("UserTypeCode") == _SYSTEM else None
    elif role is None:
        role = person_role
    if role is None:
        problem = (
            f"no code in mapping.roles (saw {listed(codes)}); list the user in "
            "mapping.actor_roles, or set mapping.person_role"
        )
        raise UnmappableError(f"{where}/RoleIDCode", problem)
    actor = {"id": user, "role": str(role)}
    if participant.get("NetworkAccessPointTypeCode") == _IP_ADDRESS:
        address = participant.get("NetworkAccessPointID", "").strip()
        ip = ip_address(address)  # a machine name given as an address is not guessed into one
        if ip:
            actor["ip"] = ip
    return actor


def _requestor(root: Element, table: MappingPolicy) -> tuple[int, Element]:
    """The participant who asked: UserIsRequestor is true unless it says false (PS3.15), and
    a person is chosen before software when several ask."""
    participants = _children(root, "ActiveParticipant")
    if not participants:
        raise UnmappableError(f"{_ROOT}/ActiveParticipant", "no participant: who acted is unknown")
    asked = [
        (n, p)
        for n, p in enumerate(participants, 1)
        if p.get("UserIsRequestor", "true").strip().lower() != "false"
    ]
    explicit = [(n, p) for n, p in asked if p.get("UserIsRequestor") is not None]
    candidates = explicit or asked
    people = [(n, p) for n, p in candidates if not _is_machine(p, table)]
    chosen = people or candidates
    if chosen and (explicit or len(chosen) == 1):
        return chosen[0]
    problem = "no single participant with UserIsRequestor=true, so who acted is unknown"
    raise UnmappableError(f"{_ROOT}/ActiveParticipant", problem)


def _is_machine(participant: Element, table: MappingPolicy) -> bool:
    """Software or an endpoint: typed so (UserTypeCode 2, PS3.15 2019+) or by its role code."""
    user_type = participant.get("UserTypeCode")
    if user_type is not None:
        return user_type.strip() == _SYSTEM
    return table.is_machine(_codes(_children(participant, "RoleIDCode")))


def _patients(root: Element) -> list[str]:
    found: list[str] = []
    for n, item in enumerate(_children(root, "ParticipantObjectIdentification"), 1):
        if (
            item.get("ParticipantObjectTypeCode") == _PERSON
            and item.get("ParticipantObjectTypeCodeRole") == _PATIENT
        ):
            where = f"{_ROOT}/ParticipantObjectIdentification[{n}]"
            patient = _attribute(item, "ParticipantObjectID", where).strip()
            if patient not in found:
                found.append(patient)
    return found


def _object_codes(root: Element) -> list[tuple[str, str]]:
    """The id types of the data objects (not the patient) the event touched."""
    codes = []
    for item in _children(root, "ParticipantObjectIdentification"):
        if item.get("ParticipantObjectTypeCodeRole") != _PATIENT:
            codes += _codes(_children(item, "ParticipantObjectIDTypeCode"))
    return codes


def _category(
    objects: list[tuple[str, str]], type_codes: list[tuple[str, str]], table: MappingPolicy
) -> str | None:
    categories = [c for c in (table.lookup(table.categories, [code]) for code in objects) if c]
    if not categories:
        event_category = table.lookup(table.event_categories, type_codes)
        categories = [event_category] if event_category else []
    category = most_sensitive(categories)
    return str(category) if category else None


def _site_names(root: Element) -> list[str]:
    names = []
    for source in _children(root, "AuditSourceIdentification"):
        names += [source.get("AuditEnterpriseSiteID", ""), source.get("AuditSourceID", "")]
    return [name.strip() for name in names if name.strip()]


def _attributes(
    type_codes: list[tuple[str, str]], objects: list[tuple[str, str]], root: Element
) -> dict[str, Any]:
    """Codes, never values: what the record said, for an auditor to see how it was mapped."""
    sources = [s.get("AuditSourceID") for s in _children(root, "AuditSourceIdentification")]
    event = _children(root, "EventIdentification")[0]
    purposes = [code for _, code in _codes(_children(event, "PurposeOfUse"))]
    attributes = {
        "type": [coded(system, code) for system, code in type_codes],
        "objects": sorted({coded(system, code) for system, code in objects}),
        "audit_source": [s for s in sources if s],
        "purpose": purposes,
    }
    return {key: value for key, value in attributes.items() if value}


def _codes(elements: list[Element]) -> list[tuple[str, str]]:
    pairs = []
    for element in elements:
        code = element.get("csd-code") or element.get("code")
        if code:
            pairs.append((element.get("codeSystemName", ""), code.strip()))
    return pairs


def _children(parent: Element, name: str) -> list[Element]:
    return [child for child in parent if _local(child.tag) == name]


def _one(parent: Element, name: str, where: str) -> Element:
    found = _children(parent, name)
    if not found:
        raise UnmappableError(f"{where}/{name}", "missing (required by DICOM PS3.15)")
    return found[0]


def _attribute(element: Element, name: str, where: str) -> str:
    value = element.get(name)
    if not value or not value.strip():
        raise UnmappableError(f"{where}/@{name}", "missing (required by DICOM PS3.15)")
    return value


def _local(tag: Any) -> str:
    """The element's name without its namespace (some senders put the messages in one)."""
    return str(tag).rsplit("}", 1)[-1]

"""An AuditEvent's elements as the mapping needs them, read from either FHIR version.

R4 (and R4B) and R5 say the same things in different places: the event's type (``type`` and
``subtype``, or ``category`` and ``code``), its outcome (a code, or an object), the agent's
network address, the purpose (``purposeOfUse``, or ``authorization``). ``R4View`` reads R4,
``R5View`` overrides what R5 moved; ``adapters.fhir`` asks a view, never the resource.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import Any

from adapters.common import (
    AUDIT_OUTCOMES,
    UnmappableError,
    first,
    ip_address,
    listed,
    shown,
    with_offset,
    without_none,
)
from adapters.table import MappingPolicy, most_sensitive
from detectors.models import Action, DataCategory, Role

# R4 codes (audit-event-outcome, as DICOM's), and R5's (issue-severity: the worst issue).
OUTCOMES = {**AUDIT_OUTCOMES, "success": "success", "information": "success"}
OUTCOMES |= {"warning": "failure", "error": "failure", "fatal": "failure"}
_WRITES = {Action.CREATE, Action.UPDATE}
_PATIENT_ROLE = "1"  # object-role / audit-entity-type code for "Patient" / "Person"
_QUERY_TYPE = re.compile(r"^(?:[A-Z]+\s+)?(?:\S*/)?([A-Z][A-Za-z]+)(?:[/?]|$)")


class R4View:
    """The R4 (and R4B) shape of an AuditEvent, as the mapping needs it."""

    def __init__(self, event: Any, path: str):
        self.event = event
        self.path = path

    def type_codes(self) -> list[tuple[str, str]]:
        return _codings(self.event.subtype) + _codings([self.event.type])

    def action(self, table: MappingPolicy) -> str:
        codes = self.type_codes()
        found = table.lookup(table.actions, codes)
        if found is None and table.is_record_event(codes):
            found = table.record_actions.get(self.event.action or "")
            if found is None:
                problem = f"{shown(self.event.action)}: no row in mapping.record_actions"
                raise UnmappableError(f"{self.path}.action", problem)
        if found is None:
            problem = f"no code in mapping.actions (saw {listed(codes)})"
            raise UnmappableError(f"{self.path}.{self._type_elements}", problem)
        # An update that created the resource (PUT of a new id) says so in its action code, C:
        # a creation, as its BALP profile (PatientCreate) says too.
        said = table.record_actions.get(self.event.action or "")
        if found in _WRITES and said in _WRITES:
            found = said
        return str(found)

    _type_elements = "subtype/type"

    def timestamp(self) -> str:
        start = self.event.period.start if self.event.period is not None else None
        if isinstance(start, datetime):  # a date alone says no time: the recorded one does
            return with_offset(start, f"{self.path}.period.start")
        return self.recorded()

    def recorded(self) -> str:
        if self.event.recorded is None:  # required, but the models let an explicit null by
            raise UnmappableError(f"{self.path}.recorded", "missing (required by FHIR)")
        return with_offset(self.event.recorded, f"{self.path}.recorded")

    def outcome(self) -> str:
        return _outcome(self.event.outcome, f"{self.path}.outcome")

    def requestor(self, table: MappingPolicy) -> tuple[int, Any]:
        """The agent who asked: a person before software when several are requestors."""
        agents = list(enumerate(self.event.agent or []))
        asked = [(n, agent) for n, agent in agents if agent.requestor]
        people = [(n, agent) for n, agent in asked if not _is_machine(agent, table)]
        if people or asked:
            return (people or asked)[0]
        if len(agents) == 1:
            return agents[0]
        problem = "no agent has requestor=true, so who acted is unknown"
        raise UnmappableError(f"{self.path}.agent", problem)

    def actor(self, table: MappingPolicy, person_role: Role | None) -> dict[str, Any]:
        n, agent = self.requestor(table)
        where = f"{self.path}.agent[{n}]"
        # Identifier, reference, login name, then the name shown: the first the record has.
        actor_id = _reference_id(agent.who) or getattr(agent, "altId", None)
        actor_id = actor_id or (agent.who.display if agent.who is not None else None)
        if not actor_id:
            raise UnmappableError(f"{where}.who", "nothing names who acted")
        codes = _agent_codes(agent)
        role = table.actor_roles.get(actor_id) or table.lookup(table.roles, codes)
        role = role or table.reference_roles.get(_resource_type(agent.who) or "")
        if role is None and not _is_machine(agent, table):
            role = person_role
        if role is None:
            problem = (
                f"no code in mapping.roles (saw {listed(codes)}); list the actor in "
                "mapping.actor_roles, or set mapping.person_role"
            )
            raise UnmappableError(f"{where}.type/role", problem)
        ip = self.ip(agent) or self.originip_address()
        return without_none({"id": str(actor_id), "role": str(role), "ip": ip})

    def originip_address(self) -> str | None:
        """Where the request came from when the person's agent says nothing of it. BALP puts
        the client machine's address on another agent (its DICOM role, source or destination,
        follows the data, not the request), and the server's as a URL: the one agent with an
        IP address is the client. Two or more: not guessed."""
        found = {ip for ip in (self.ip(agent) for agent in self.event.agent or []) if ip}
        return found.pop() if len(found) == 1 else None

    def ip(self, agent: Any) -> str | None:
        network = agent.network
        if network is None or network.type not in (None, "2"):
            return None
        return ip_address(network.address)

    def purpose_codes(self, table: MappingPolicy) -> list[tuple[str, str]]:
        _, agent = self.requestor(table)
        concepts = [*(self.event.purposeOfEvent or []), *(agent.purposeOfUse or [])]
        return _concept_codes(concepts)

    def site_names(self) -> list[str]:
        source = self.event.source
        if source is None:
            return []
        return [name for name in (*_names(source.observer), source.site) if name]

    def entities(self) -> list[tuple[int, Any, str | None]]:
        """Each entity with the role code that says whether it is the patient."""
        return [
            (n, entity, entity.role.code if entity.role else None)
            for n, entity in enumerate(self.event.entity or [])
        ]

    def patients(self) -> list[str]:
        """The patients named, in order: entities whose role is Patient, or, with no role
        given, that point to a Patient resource (one with another role is data, e.g. the
        Patient resource itself read as "Domain Resource")."""
        found: list[str] = []
        for n, entity, role in self.entities():
            what = entity.what
            if role != _PATIENT_ROLE and (role is not None or _resource_type(what) != "Patient"):
                continue
            patient = _patient_id(what)
            if not patient:
                where = f"{self.path}.entity[{n}].what"
                raise UnmappableError(where, "a patient entity with no identifier or reference")
            if patient not in found:
                found.append(patient)
        return found

    def data_types(self) -> list[str]:
        """The resource types of the data the event touched (read, searched, changed)."""
        types = []
        for n, entity, _ in self.entities():
            kind = _resource_type(entity.what) or _query_type(
                entity.query, f"{self.path}.entity[{n}].query"
            )
            if kind:
                types.append(kind)
        return types

    def category(self, table: MappingPolicy) -> str | None:
        types = self.data_types()
        data = [kind for kind in types if kind != "Patient"] or types
        categories = [table.categories[kind] for kind in data if kind in table.categories]
        if not categories:
            event_category = table.lookup(table.event_categories, self.type_codes())
            categories = [event_category] if event_category else []
        category: DataCategory | None = most_sensitive(categories)
        return str(category) if category else None

    def attributes(self, event: Any, table: MappingPolicy, r5: bool) -> dict[str, Any]:
        profiles = [str(p) for p in (event.meta.profile or [])] if event.meta else []
        return without_none(
            {
                "version": "R5" if r5 else "R4",
                "id": event.id,
                "type": [
                    f"{system}|{code}" if system else code for system, code in self.type_codes()
                ],
                "entities": sorted(set(self.data_types())) or None,
                "purpose": [code for _, code in self.purpose_codes(table)] or None,
                "profile": profiles or None,
            }
        )


class R5View(R4View):
    """R5 moved the event's type to ``category``/``code``, the outcome into an object, the
    network address into ``network[x]``, the purpose into ``authorization``."""

    _type_elements = "code/category"

    def type_codes(self) -> list[tuple[str, str]]:
        return _concept_codes([self.event.code]) + _concept_codes(self.event.category or [])

    def timestamp(self) -> str:
        occurred = self.event.occurredDateTime
        period = self.event.occurredPeriod
        if period is not None and period.start is not None:
            occurred = period.start
        if isinstance(occurred, datetime):  # a date alone says no time
            return with_offset(occurred, f"{self.path}.occurred[x]")
        return self.recorded()

    def outcome(self) -> str:
        outcome = self.event.outcome
        code = outcome.code.code if outcome is not None and outcome.code is not None else None
        return _outcome(code, f"{self.path}.outcome.code")

    def ip(self, agent: Any) -> str | None:
        return ip_address(agent.networkString)

    def purpose_codes(self, table: MappingPolicy) -> list[tuple[str, str]]:
        _, agent = self.requestor(table)
        return _concept_codes([*(self.event.authorization or []), *(agent.authorization or [])])

    def site_names(self) -> list[str]:
        source = self.event.source
        return [*_names(source.observer), *_names(source.site)] if source is not None else []

    def entities(self) -> list[tuple[int, Any, str | None]]:
        return [
            (n, entity, first(code for _, code in _concept_codes([entity.role])))
            for n, entity in enumerate(self.event.entity or [])
        ]

    def patients(self) -> list[str]:
        found = super().patients()
        patient = _patient_id(self.event.patient)
        return [patient, *(p for p in found if p != patient)] if patient else found


def _codings(codings: list[Any] | None) -> list[tuple[str, str]]:
    return [(c.system or "", c.code) for c in codings or [] if c is not None and c.code]


def _concept_codes(concepts: list[Any]) -> list[tuple[str, str]]:
    return [pair for concept in concepts if concept for pair in _codings(concept.coding)]


def _agent_codes(agent: Any) -> list[tuple[str, str]]:
    return _concept_codes([agent.type, *(agent.role or [])])


def _is_machine(agent: Any, table: MappingPolicy) -> bool:
    return _resource_type(agent.who) == "Device" or table.is_machine(_agent_codes(agent))


def _split(reference: str) -> tuple[str | None, str]:
    """``("Patient", "12")`` for ``Patient/12`` or ``http://x/fhir/Patient/12/_history/2``;
    ``(None, reference)`` for what is not a literal reference (``urn:uuid:...``, ``#local``)."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return parts[-2], parts[-1]
    return None, reference


def _resource_type(reference: Any) -> str | None:
    """The resource type a Reference points to, from its literal reference or its ``type``."""
    if reference is None:
        return None
    kind = _split(str(reference.reference))[0] if reference.reference else None
    if kind is None and reference.type:
        kind = str(reference.type).rsplit("/", 1)[-1]
    return kind


def _reference_id(reference: Any) -> str | None:
    """Who or what a Reference names: its identifier's value, else the id in its reference."""
    if reference is None:
        return None
    if reference.identifier is not None and reference.identifier.value:
        return str(reference.identifier.value)
    if reference.reference:
        return _split(str(reference.reference))[1]
    return None


def _patient_id(reference: Any) -> str | None:
    """A patient as the server knows it (``Patient/12`` -> 12), else by its identifier (an
    MRN, a national number): the same patient keeps the same id across a server's records."""
    if reference is None:
        return None
    if _resource_type(reference) == "Patient" and reference.reference:
        return _split(str(reference.reference))[1]
    return _reference_id(reference)


def _names(reference: Any) -> list[str]:
    if reference is None:
        return []
    if isinstance(reference, str):
        return [reference]
    identifier = reference.identifier.value if reference.identifier is not None else None
    return [name for name in (identifier, reference.reference, reference.display) if name]


def _query_type(query: Any, element: str) -> str | None:
    """The resource type a BALP query entity searched (``GET [base]/Observation?...``)."""
    if not query:
        return None
    try:
        text = query.decode("utf-8") if isinstance(query, bytes) else base64.b64decode(query)
        text = text if isinstance(text, str) else text.decode("utf-8")
    except (UnicodeDecodeError, binascii.Error):
        raise UnmappableError(element, "not base64 of UTF-8 text") from None
    match = _QUERY_TYPE.match(text.strip())
    return match.group(1) if match else None


def _outcome(code: Any, element: str) -> str:
    if code is None:
        return "success"
    outcome = OUTCOMES.get(str(code))
    if outcome is None:
        raise UnmappableError(element, f"{shown(code)} is not an audit-event-outcome code")
    return outcome

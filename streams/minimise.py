"""Minimisation at ingestion: what a producer puts in free text never reaches our indices raw.

Pseudonymising ``patient_id`` is not enough: producers write identifiers wherever they can
("opened chart of P-777777 (Jean Dupont, NIR 1 85 05 75 123 456 78)" in an attribute, a patient
id inside a ticket id). Two rules, applied to every event before anything leaves the ingest
stage (history, detection, alerts, logs, metrics):

1. ``attributes`` keep only the keys the privacy policy allows for the event's source (default:
   only ``pseudonymised``, which export detection reads, and Guetteur's own audit record); the
   rest is dropped, since free text cannot be proven harmless (a name is not a pattern).
2. Every stored free-text value (ids, organisation, destination, ticket, export fields, the
   kept attributes) is scanned for identifiers: the event's own raw patient id, the
   deployment's patient-id patterns, NIR/INS, e-mail addresses, phone numbers and IBANs. Each
   is replaced by ``[kind:pseudonym]``, keyed like patient ids: still comparable (the same
   value gives the same token, so grouping and detection keep working), never readable.

Destinations the export policy allowlists are the deployment's declared partners, not personal
data: they are kept as written, so the allowlist still matches them.

What was removed is reported without its value (field and kind), for the metric and the
redaction topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from detectors.models import AccessEvent, Actor, replaced
from detectors.policy import ExportPolicy, Policy, PrivacyPolicy
from streams.pseudonym import Pseudonymizer, pseudonymise

# Deliberately broad: a false positive costs a readable id, a false negative leaks one. Every
# repetition is bounded, so scanning stays linear in the text's length.
IDENTIFIER_PATTERNS = {
    # French NIR / INS: sex, year, month (or 20-99 for special cases), department (2A/2B for
    # Corsica), commune, order number, optional 2-digit key; spaces, dots or dashes allowed.
    "nir": r"(?<![0-9])[12][ .-]?\d{2}[ .-]?(?:0[1-9]|1[0-2]|[2-9]\d)[ .-]?(?:\d{2}|2[AB])"
    r"[ .-]?\d{3}[ .-]?\d{3}(?:[ .-]?\d{2})?(?![0-9])",
    # Bounded repetitions (RFC 5321 lengths): an unbounded one made a long run of letters
    # without "@" cost quadratic time, a stall on hostile input.
    "email": r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
    r"\.[A-Za-z]{2,24}\b",
    "iban": r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b",
    "phone": r"(?<![0-9])(?:\+\d{2}[ .-]?|0)[1-9](?:[ .-]?\d{2}){4}(?![0-9])",
}


MAX_SCRUBBED = 256
REMEMBERED_SCANS = 65_536
TEXT_FIELDS = ("event_id", "source", "practice_id", "session_id", "ticket_id", "authorization_ref")


@dataclass(frozen=True)
class Redaction:
    """One identifier (or dropped attribute) removed from one field: never its value."""

    field: str
    kind: str  # "patient_id", "nir", "email", "iban", "phone", or "attribute_dropped"


class Minimiser:
    def __init__(
        self, policy: PrivacyPolicy, exports: ExportPolicy, pseudonymizer: Pseudonymizer
    ) -> None:
        self.policy = policy
        self.exports = exports
        self.pseudonymizer = pseudonymizer
        patterns = [(f"patient_id{n}", p) for n, p in enumerate(policy.patient_id_patterns)]
        patterns += list(IDENTIFIER_PATTERNS.items())
        self._scanner = re.compile("|".join(f"(?P<{name}>{p})" for name, p in patterns))
        self._scans: dict[str, tuple[str, tuple[str, ...]]] = {}

    def protect(self, event: AccessEvent) -> tuple[AccessEvent, list[Redaction]]:
        """A valid event as everything downstream may see it: patient id pseudonymised, free
        text minimised; and what was taken out."""
        return self.minimise(event.patient_id, pseudonymise(event, self.pseudonymizer))

    def scanned(self, value: str, remember: bool = True) -> tuple[str, tuple[str, ...]]:
        """``value`` with the pattern-found identifiers replaced, and their kinds. Ids (a
        practice, an actor, a source) come back all day: the answers are remembered, a bounded
        number of them (scanning every field of every event cost a third of offline detect)."""
        known = self._scans.get(value)
        if known is None:
            found: list[str] = []
            clean = self._scanner.sub(lambda match: self._replace(match, found), value)
            known = (clean, tuple(found))
            if remember:
                if len(self._scans) >= REMEMBERED_SCANS:
                    self._scans.clear()
                self._scans[value] = known
        return known

    def _replace(self, match: re.Match[str], found: list[str]) -> str:
        kind = match.lastgroup or "identifier"
        if kind.startswith("patient_id"):
            kind = "patient_id"
        found.append(kind)
        return _token(self.pseudonymizer, kind, match.group())

    def scrub_text(self, text: str) -> str:
        """Free text of ours that quotes a producer (a refusal's reason): identifiers out."""
        return _Scrub(self, None, []).text("text", text)

    def minimise(
        self, raw_patient_id: str | None, event: AccessEvent
    ) -> tuple[AccessEvent, list[Redaction]]:
        """The event as it may be stored, and what was taken out. ``event`` is already
        pseudonymised; ``raw_patient_id`` is what the producer sent, to find it elsewhere."""
        found: list[Redaction] = []
        scrub = _Scrub(self, raw_patient_id, found)
        changes: dict[str, Any] = {}
        for name in TEXT_FIELDS:
            value = getattr(event, name)
            if value is None or self._known_clean(value, raw_patient_id):
                continue
            clean = scrub.text(name, value)
            if clean != value:
                changes[name] = clean
        if event.destination is not None and not self._declared(event):
            clean = scrub.text("destination", event.destination)
            if clean != event.destination:
                changes["destination"] = clean
        if event.fields:
            fields = [scrub.text("fields", f) for f in event.fields]
            if fields != event.fields:
                changes["fields"] = fields
        actor = self._actor(event.actor, scrub)
        if actor is not event.actor:
            changes["actor"] = actor
        if event.attributes is not None:
            attributes = self._attributes(event, scrub, found)
            if attributes != event.attributes:
                changes["attributes"] = attributes
        return (replaced(event, **changes) if changes else event), found

    def _known_clean(self, value: str, raw_patient_id: str | None) -> bool:
        """The common case, from memory: a value seen before, with nothing to take out."""
        known = self._scans.get(value)
        if known is None or known[1]:
            return False
        return not raw_patient_id or raw_patient_id not in value

    def _declared(self, event: AccessEvent) -> bool:
        purpose = event.purpose.value if event.purpose else None
        return event.destination is not None and self.exports.destination_allowed(
            purpose, event.destination
        )

    def _actor(self, actor: Actor, scrub: _Scrub) -> Actor:
        raw = scrub.raw_patient_id
        organization_clean = actor.organization is None or self._known_clean(
            actor.organization, raw
        )
        if self._known_clean(actor.id, raw) and organization_clean:
            return actor
        actor_id = scrub.text("actor.id", actor.id)
        organization = (
            scrub.text("actor.organization", actor.organization)
            if actor.organization is not None
            else None
        )
        if actor_id == actor.id and organization == actor.organization:
            return actor
        return actor.model_copy(update={"id": actor_id, "organization": organization})

    def _attributes(
        self, event: AccessEvent, scrub: _Scrub, found: list[Redaction]
    ) -> dict[str, Any]:
        allowed = set(self.policy.attributes.get("*", [])) | set(
            self.policy.attributes.get(event.source, [])
        )
        kept = {}
        for key, value in (event.attributes or {}).items():
            if key in allowed:
                kept[key] = scrub.value(f"attributes.{key}", value)
            else:
                found.append(Redaction("attributes", "attribute_dropped"))
        return kept


class _Scrub:
    """Replaces identifiers in one event's values, noting each replacement."""

    def __init__(self, minimiser: Minimiser, raw_patient_id: str | None, found: list[Redaction]):
        self.minimiser = minimiser
        self.raw_patient_id = raw_patient_id or None
        self.found = found

    def text(self, field: str, value: str) -> str:
        original = value
        if self.raw_patient_id and self.raw_patient_id in value:
            token = _token(self.minimiser.pseudonymizer, "patient_id", self.raw_patient_id)
            value = value.replace(self.raw_patient_id, token)
            self.found.append(Redaction(field, "patient_id"))
        # Event ids are unique: remembering them would only push the others out.
        value, kinds_found = self.minimiser.scanned(value, remember=field != "event_id")
        self.found += [Redaction(field, kind) for kind in kinds_found]
        if len(value) > MAX_SCRUBBED and value != original:
            # many identifiers: one token for the whole value
            return _token(self.minimiser.pseudonymizer, field, original)
        return value

    def value(self, field: str, value: Any) -> Any:
        """Any JSON value: strings scanned, containers walked (keys included), the rest kept."""
        if isinstance(value, str):
            return self.text(field, value)
        if isinstance(value, dict):
            return {self.text(field, str(k)): self.value(field, v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(field, item) for item in value]
        return value


def _token(pseudonymizer: Pseudonymizer, kind: str, raw: str) -> str:
    """Short (64 bits of the keyed hash): equal values still compare equal, and a field full
    of identifiers stays within Elasticsearch's limits (an ``_id`` is 512 bytes)."""
    key_id, _, mac = pseudonymizer.pseudonym(raw).partition(":")
    return f"[{kind}:{key_id}:{mac[:16]}]"


def protected(
    events: Iterable[dict[str, Any]], policy: Policy, pseudonymizer: Pseudonymizer
) -> list[AccessEvent]:
    """Events (as producers send them) as the worker hands them to detection: for offline
    runs that must find the same alerts (demo, benchmarks, tests)."""
    minimiser = Minimiser(policy.privacy, policy.export, pseudonymizer)
    return [
        minimiser.protect(AccessEvent.model_validate(event, strict=False))[0] for event in events
    ]


def kinds(redactions: Iterable[Redaction]) -> dict[tuple[str, str], int]:
    """(field, kind) -> count, for the metric and the report."""
    counted: dict[tuple[str, str], int] = {}
    for redaction in redactions:
        key = (redaction.field, redaction.kind)
        counted[key] = counted.get(key, 0) + 1
    return counted

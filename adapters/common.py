"""What the FHIR and ATNA mappings share: their result, stable event ids, and refusals."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# A single audit record is a few kilobytes; a Bundle of a few hundred fits. Anything larger is
# refused before parsing, so one message cannot take the worker's memory; it is also under
# Kafka's default message limit (1 MiB), so what the HTTP endpoint accepts the topic takes.
MAX_RECORD_BYTES = 1_000_000

# The contract's limit on event ids (``event_id``: 1-128 characters).
MAX_EVENT_ID = 128


class UnmappableError(Exception):
    """Raised inside a mapping at the first element it cannot map; caught at its edge."""

    def __init__(self, element: str, problem: str):
        super().__init__(f"{element}: {problem}")
        self.element = element
        self.problem = problem


@dataclass(frozen=True)
class Refusal:
    """A record (or one entry of a Bundle) that maps to nothing, where, and why.

    ``original`` is the record itself (for a Bundle entry, that entry's resource alone), so the
    dead letter made of it can be replayed once the mapping table has the row it lacked.
    """

    element: str
    problem: str
    original: bytes

    @property
    def reason(self) -> str:
        return f"{self.element}: {self.problem}"


@dataclass
class Translation:
    """Access events (contract JSON, not yet validated: the ingest path does that) and the
    records, or Bundle entries, that were refused."""

    events: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    records: int = 0  # audit records read (a Bundle counts its entries)
    mapped: int = 0  # of which mapped to events (a refused transaction maps none)

    def extend(self, other: Translation) -> None:
        self.events.extend(other.events)
        self.refusals.extend(other.refusals)
        self.records += other.records
        self.mapped += other.mapped


def content_id(raw: bytes) -> str:
    """A record without an id of its own is named by its content: a producer that sends the
    same record twice (a retry) gets the same event ids, and the history keeps one access."""
    return hashlib.sha256(raw.strip()).hexdigest()[:32]


def event_ids(base: str, patients: int) -> list[str]:
    """One id per access a record describes: the record's own for one patient (or none),
    ``<base>#<n>`` for the n-th of several, in the record's order (which a resent record keeps).
    """
    base = base[: MAX_EVENT_ID - 8]
    if patients <= 1:
        return [base]
    return [f"{base}#{n}" for n in range(1, patients + 1)]


def with_offset(moment: datetime, element: str) -> str:
    """RFC 3339 with an offset, as the contract wants; a time without one is not guessed."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise UnmappableError(
            element, "a date-time without a UTC offset (its time zone is unknown)"
        )
    return moment.isoformat()


def decode_text(raw: bytes, what: str) -> str:
    if len(raw) > MAX_RECORD_BYTES:
        raise UnmappableError(what, f"{len(raw)} bytes, over the {MAX_RECORD_BYTES}-byte limit")
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")  # syslog MSG may start with a BOM
    except UnicodeDecodeError as exc:
        raise UnmappableError(what, f"not UTF-8 text (byte {exc.start})") from None


# DICOM's EventOutcomeIndicator and FHIR R4's audit-event-outcome share these codes.
AUDIT_OUTCOMES = {"0": "success", "4": "failure", "8": "failure", "12": "failure"}


def ip_address(text: str | None) -> str | None:
    """The address written normalised (``2001:db8::1``), or None for a host name, a URL or
    nothing: an address is never resolved or guessed."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def shown(value: Any) -> str:
    """A value quoted in a refusal, cut short: a reason is read by people, in logs too."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def coded(system: str, code: str) -> str:
    """How a code is written in refusals, attributes and the mapping tables' keys."""
    return f"{system}|{code}" if system else code


def listed(codes: list[tuple[str, str]]) -> str:
    return ", ".join(coded(system, code) for system, code in codes[:6]) or "no code"


def first(values: Iterable[str | None]) -> str | None:
    return next((value for value in values if value), None)

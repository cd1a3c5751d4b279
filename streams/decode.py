"""From raw Kafka bytes to a validated ``AccessEvent``, or a precise reason for refusing it.

Reasons are short, stable codes (metrics labels, DLQ filters) plus a detail for people. A detail
names fields and rules, never the offending value: a rejected message may carry a raw patient
identifier, and the reason travels to logs and metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import ValidationError

from detectors.models import AccessEvent

MAX_EVENT_BYTES = 64 * 1024


class Reason(StrEnum):
    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    CONTRACT_VIOLATION = "contract_violation"
    # A FHIR AuditEvent or ATNA message that maps to no access event (adapters/): the detail
    # names the element, e.g. "AuditEvent.agent[0].type/role: no code in mapping.roles".
    UNMAPPABLE = "unmappable"
    # Valid, but Elasticsearch refused the document for good (see streams.history.writer).
    HISTORY_REFUSED = "history_refused"
    # Valid, but a later step (pseudonymisation, document building) failed on it: a bug of
    # ours, kept with the exception's type so it can be fixed and the message replayed.
    UNPROCESSABLE = "unprocessable"


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str


@dataclass(frozen=True)
class EventTimeBounds:
    """When an access can plausibly have happened.

    The contract accepts any RFC 3339 time, but a year-1 or year-9999 timestamp is a producer
    bug, and one that overflows when converted to UTC crashes whatever computes with it. Events
    stamped far in the future would drag the event-time clock ahead of every other source.
    """

    earliest_year: int = 2000
    latest_year: int = 2100
    max_future: timedelta = timedelta(hours=1)

    def violation(self, event: AccessEvent, now: datetime | None) -> str | None:
        """What is wrong with the event's times, naming the field and the bound, not the value."""
        at = _in_utc(event.timestamp)
        if at is None or not self.earliest_year <= at.year <= self.latest_year:
            return (
                f"timestamp: must be between the years {self.earliest_year} and "
                f"{self.latest_year} (UTC)"
            )
        if now is not None and at > now + self.max_future:
            seconds = self.max_future.total_seconds()
            return f"timestamp: more than {seconds:g} s in the future of the worker's clock"
        expires = event.consent.expires_at if event.consent else None
        if expires is not None and _in_utc(expires) is None:
            return "consent.expires_at: out of the representable range once converted to UTC"
        return None


DEFAULT_BOUNDS = EventTimeBounds()


def _in_utc(moment: datetime) -> datetime | None:
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def decode(
    raw: bytes | None,
    max_bytes: int = MAX_EVENT_BYTES,
    bounds: EventTimeBounds = DEFAULT_BOUNDS,
    now: datetime | None = None,
) -> AccessEvent | Rejected:
    """The event, or why not; never raises, whatever the bytes (see tests/unit/test_hostile_input).

    ``now`` is the wall clock the future bound is measured from; None (offline) skips that bound.
    """
    try:
        return _decode(raw, max_bytes, bounds, now)
    except Exception as exc:  # a parser limit we did not foresee: still a verdict, not a crash
        return Rejected(Reason.NOT_JSON, f"could not be parsed ({type(exc).__name__})")


def _decode(
    raw: bytes | None, max_bytes: int, bounds: EventTimeBounds, now: datetime | None
) -> AccessEvent | Rejected:
    """One parse for a valid event: pydantic reads the bytes itself. Only a message it refuses
    is parsed again, by ``_verdict``, to say precisely why (its JSON parser accepts less than
    ``json.loads``: never more, see tests/unit/test_hostile_input, so no verdict changes)."""
    if raw is None or len(raw) > max_bytes:
        return _verdict(raw, max_bytes)
    try:
        event = AccessEvent.model_validate_json(raw)
    except ValidationError:
        return _verdict(raw, max_bytes)
    if b"null" in raw:  # cheap: a valid event very seldom holds the word at all
        nulls = _null_fields(event)
        if nulls:
            return _nulls_refused(nulls)
    problem = bounds.violation(event, now)
    if problem is not None:
        return Rejected(Reason.CONTRACT_VIOLATION, problem)
    return event


def _verdict(raw: bytes | None, max_bytes: int) -> Rejected:
    """Why a message is refused, the first problem in the order a producer would fix them."""
    if raw is None:
        return Rejected(Reason.NOT_JSON, "empty message (no value)")
    if len(raw) > max_bytes:
        return Rejected(Reason.OVERSIZED, f"{len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(Reason.NOT_UTF8, f"invalid UTF-8 byte at position {exc.start}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejected(Reason.NOT_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return Rejected(Reason.NOT_JSON, "nested too deeply to parse")
    except ValueError as exc:  # e.g. an integer beyond the interpreter's digit limit
        return Rejected(Reason.NOT_JSON, str(exc).split(":", 1)[0])
    if not isinstance(value, dict):
        return Rejected(Reason.NOT_AN_OBJECT, f"a JSON {type(value).__name__}, not an object")
    nulls = _null_keys(value)
    if nulls:
        return _nulls_refused(nulls)
    try:
        AccessEvent.model_validate_json(text)
    except ValidationError as exc:
        return Rejected(Reason.CONTRACT_VIOLATION, describe(exc))
    return Rejected(Reason.NOT_JSON, "refused by the parser but not by json.loads")  # no case known


def _nulls_refused(nulls: list[str]) -> Rejected:
    return Rejected(
        Reason.CONTRACT_VIOLATION,
        "; ".join(f"{field}: null is not allowed (omit the field instead)" for field in nulls),
    )


def _null_keys(event: dict[str, object]) -> list[str]:
    """Fields sent as ``null``: the contract's optional fields are absent or a value, never null.

    ``attributes`` is free-form and kept verbatim, so nulls inside it are allowed.
    """
    found = [key for key, value in event.items() if value is None]
    for nested in ("actor", "consent"):
        inner = event.get(nested)
        if isinstance(inner, dict):
            found += [f"{nested}.{key}" for key, value in inner.items() if value is None]
    return sorted(found)


def _null_fields(event: AccessEvent) -> list[str]:
    """``_null_keys`` read from the validated model: a field the producer set is in its
    ``model_fields_set``, and an optional one set to null holds None."""
    found = [name for name in event.model_fields_set if getattr(event, name) is None]
    for nested in ("actor", "consent"):
        inner = getattr(event, nested)
        if inner is not None:
            found += [
                f"{nested}.{name}"
                for name in inner.model_fields_set
                if getattr(inner, name) is None
            ]
    return sorted(found)


def describe(exc: ValidationError) -> str:
    """``field.path: message`` for each error, without the rejected input values."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(event)"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)

"""From raw Kafka bytes to a validated ``AccessEvent``, or a precise reason for refusing it.

Reasons are short, stable codes (metrics labels, DLQ filters) plus a detail for people. A detail
names fields and rules, never the offending value: a rejected message may carry a raw patient
identifier, and the reason travels to logs and metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    # Valid, but Elasticsearch refused the document for good (see streams.history.writer).
    HISTORY_REFUSED = "history_refused"


@dataclass(frozen=True)
class Rejected:
    reason: Reason
    detail: str


def decode(raw: bytes | None, max_bytes: int = MAX_EVENT_BYTES) -> AccessEvent | Rejected:
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
    if not isinstance(value, dict):
        return Rejected(Reason.NOT_AN_OBJECT, f"a JSON {type(value).__name__}, not an object")
    nulls = _null_fields(value)
    if nulls:
        return Rejected(
            Reason.CONTRACT_VIOLATION,
            "; ".join(f"{field}: null is not allowed (omit the field instead)" for field in nulls),
        )
    try:
        return AccessEvent.model_validate_json(text)
    except ValidationError as exc:
        return Rejected(Reason.CONTRACT_VIOLATION, describe(exc))


def _null_fields(event: dict[str, object]) -> list[str]:
    """Fields sent as ``null``: the contract's optional fields are absent or a value, never null.

    ``attributes`` is free-form and kept verbatim, so nulls inside it are allowed.
    """
    found = [key for key, value in event.items() if value is None]
    for nested in ("actor", "consent"):
        inner = event.get(nested)
        if isinstance(inner, dict):
            found += [f"{nested}.{key}" for key, value in inner.items() if value is None]
    return sorted(found)


def describe(exc: ValidationError) -> str:
    """``field.path: message`` for each error, without the rejected input values."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "(event)"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)

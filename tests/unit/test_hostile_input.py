"""Hostile input at the door: every message gets a verdict, none makes decoding raise.

Each case once made the ingest agent raise with a batch in flight, which Faust answers by
committing the batch's offsets: the valid events beside it were lost (issue 11).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from detectors.models import AccessEvent
from streams.decode import EventTimeBounds, Reason, Rejected, decode
from tests.helpers import MINIMAL_EVENT

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _event(**changes: object) -> bytes:
    return json.dumps({**MINIMAL_EVENT, **changes}).encode()


def _with_raw_field(name: str, raw_json: bytes) -> bytes:
    """A valid event plus one field whose JSON is written by hand (json.dumps cannot)."""
    return _event()[:-1] + b', "' + name.encode() + b'": ' + raw_json + b"}"


HOSTILE = {
    "nested 1,000 levels": (b'{"a":' * 1000 + b"1" + b"}" * 1000, Reason.NOT_JSON),
    "nested 100,000 levels": (b"[" * 100_000 + b"]" * 100_000, Reason.OVERSIZED),
    "nested in attributes": (
        _with_raw_field("attributes", b'{"a":' * 300 + b"1" + b"}" * 300),
        Reason.CONTRACT_VIOLATION,
    ),
    "5,000-digit integer": (_with_raw_field("record_count", b"9" * 5000), Reason.NOT_JSON),
    "float record count": (_event(record_count=1e308), Reason.CONTRACT_VIOLATION),
    "NaN": (_with_raw_field("record_count", b"NaN"), Reason.CONTRACT_VIOLATION),
    "year 1, +14:00": (_event(timestamp="0001-01-01T00:00:00+14:00"), Reason.CONTRACT_VIOLATION),
    "year 9999, -14:00": (
        _event(timestamp="9999-12-31T23:59:59-14:00"),
        Reason.CONTRACT_VIOLATION,
    ),
    "year 1999": (_event(timestamp="1999-12-31T23:59:59Z"), Reason.CONTRACT_VIOLATION),
    "year 2101": (_event(timestamp="2101-01-01T00:00:00Z"), Reason.CONTRACT_VIOLATION),
    "a day in the future": (
        _event(timestamp=(NOW + timedelta(days=1)).isoformat()),
        Reason.CONTRACT_VIOLATION,
    ),
    "consent expiring in year 1": (
        _event(action="consent_granted", consent={"expires_at": "0001-01-01T00:00:00+14:00"}),
        Reason.CONTRACT_VIOLATION,
    ),
    "timestamp as a number": (_event(timestamp=1_700_000_000), Reason.CONTRACT_VIOLATION),
    "actor as a string": (_event(actor="dr-martin"), Reason.CONTRACT_VIOLATION),
    "fields as an object": (_event(fields={"a": 1}), Reason.CONTRACT_VIOLATION),
    "lone surrogate": (_event(event_id="\ud800"), Reason.CONTRACT_VIOLATION),
    "NUL bytes": (b"\x00" * 100, Reason.NOT_JSON),
    "empty": (b"", Reason.NOT_JSON),
    "whitespace": (b"   \n", Reason.NOT_JSON),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_messages_are_refused_with_a_reason_never_raised(case: str) -> None:
    raw, reason = HOSTILE[case]
    result = decode(raw, now=NOW)
    assert isinstance(result, Rejected), case
    assert result.reason is reason, (case, result)
    assert result.detail


def test_a_huge_count_the_contract_allows_is_accepted_here() -> None:
    """The contract has no maximum; Elasticsearch's ``long`` has, and its refusal is a dead
    letter of its own (``history_refused``, tested on the real stack)."""
    assert isinstance(decode(_event(record_count=2**64), now=NOW), AccessEvent)


def test_the_time_bounds_are_configuration() -> None:
    old = _event(timestamp="1990-06-01T00:00:00Z")
    assert isinstance(decode(old, now=NOW), Rejected)
    bounds = EventTimeBounds(earliest_year=1980, latest_year=2100, max_future=timedelta(0))
    assert isinstance(decode(old, bounds=bounds, now=NOW), AccessEvent)
    soon = _event(timestamp=(NOW + timedelta(minutes=30)).isoformat())
    assert isinstance(decode(soon, now=NOW), AccessEvent)  # default skew: 1 h
    assert isinstance(decode(soon, bounds=bounds, now=NOW), Rejected)


def test_the_time_detail_names_the_field_and_bound_not_the_value() -> None:
    result = decode(_event(timestamp="0001-01-01T00:00:00+14:00"), now=NOW)
    assert isinstance(result, Rejected)
    assert result.detail.startswith("timestamp:")
    assert "0001" not in result.detail


def test_valid_events_beside_hostile_ones_still_decode() -> None:
    for raw, _ in HOSTILE.values():
        decode(raw, now=NOW)
    assert isinstance(decode(_event(), now=NOW), AccessEvent)


NULLS = {
    "null optional field": _event(practice_id=None),
    "null actor field": _event(actor={"id": "dr-martin", "role": "practitioner", "ip": None}),
    "null consent field": _event(consent={"mode": None}),
    "null inside attributes (allowed)": _event(attributes={"note": None}),
    "the word null in a value": _event(ticket_id="null"),
}


def _reference(raw: bytes) -> AccessEvent | Rejected:
    """The verdict of the long way (json.loads, nulls, then pydantic): what ``decode`` gave
    before it let pydantic parse valid events alone."""
    from streams.decode import _null_keys, _verdict

    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return _verdict(raw, 64 * 1024)
    if not isinstance(value, dict) or _null_keys(value):
        return _verdict(raw, 64 * 1024)
    try:
        event = AccessEvent.model_validate_json(raw)
    except ValueError:
        return _verdict(raw, 64 * 1024)
    problem = EventTimeBounds().violation(event, NOW)
    return Rejected(Reason.CONTRACT_VIOLATION, problem) if problem else event


@pytest.mark.parametrize(
    "raw",
    [raw for raw, _ in HOSTILE.values()] + list(NULLS.values()) + [_event()],
    ids=[*HOSTILE, *NULLS, "valid"],
)
def test_parsing_valid_events_once_changes_no_verdict(raw: bytes) -> None:
    """``decode`` lets pydantic parse the bytes and only parses a refused message again;
    its parser must never accept what ``json.loads`` refuses, nor a null the contract forbids."""
    found, expected = decode(raw, now=NOW), _reference(raw)
    if isinstance(expected, Rejected):
        assert found == expected
    else:
        assert isinstance(found, AccessEvent)
        assert found.model_dump() == expected.model_dump()
        assert found.model_fields_set == expected.model_fields_set

from __future__ import annotations

import json

import pytest

from detectors.models import AccessEvent
from streams.decode import Reason, Rejected, decode
from tests.helpers import MINIMAL_EVENT

VALID = {**MINIMAL_EVENT, "patient_id": "P-SECRET-42"}


def _raw(**changes: object) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


def test_a_valid_event_decodes() -> None:
    assert isinstance(decode(_raw()), AccessEvent)


@pytest.mark.parametrize(
    ("raw", "reason", "detail"),
    [
        (b"\xff\xfe{}", Reason.NOT_UTF8, "position 0"),
        (b"{not json", Reason.NOT_JSON, "line 1 column 2"),
        (b"[1, 2]", Reason.NOT_AN_OBJECT, "list"),
        (b"x" * 70_000, Reason.OVERSIZED, "70000 bytes"),
        (
            _raw(timestamp="2026-11-16T10:00:00"),
            Reason.CONTRACT_VIOLATION,
            "timestamp: Input should have timezone info",
        ),
        (_raw(action="peek"), Reason.CONTRACT_VIOLATION, "action: Input should be"),
        (
            _raw(record_count=-3),
            Reason.CONTRACT_VIOLATION,
            "record_count: Input should be greater than or equal to 0",
        ),
        (_raw(actor={"id": "x", "role": "janitor"}), Reason.CONTRACT_VIOLATION, "actor.role"),
        (
            _raw(surprise=True),
            Reason.CONTRACT_VIOLATION,
            "surprise: Extra inputs are not permitted",
        ),
        (
            _raw(event_id="e" * 129),
            Reason.CONTRACT_VIOLATION,
            "event_id: String should have at most 128",
        ),
    ],
)
def test_each_kind_of_bad_message_gets_a_precise_reason(
    raw: bytes, reason: Reason, detail: str
) -> None:
    result = decode(raw)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert detail in result.detail


def test_the_reason_never_repeats_the_rejected_values() -> None:
    result = decode(_raw(patient_id=12345678, timestamp="P-SECRET-42"))
    assert isinstance(result, Rejected)
    assert "P-SECRET-42" not in result.detail and "12345678" not in result.detail

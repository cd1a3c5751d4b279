"""Signed records (checkpoints, retention) and the retention calendar."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from streams.history.chain import Link
from streams.history.checkpoints import check, ensure_separate, heads_body, signed_document
from streams.history.retention import cutoff
from streams.keys import Key
from streams.settings import ConfigError

KEY = Key("c1", b"checkpoint-key-0123456789abcdef0123")
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _signed() -> dict[str, object]:
    return signed_document(KEY, heads_body("app", {0: Link(7, "a" * 64)}, NOW))


def test_a_signed_checkpoint_checks_out() -> None:
    record = check("id", _signed(), {"c1": KEY})
    assert record.valid and record.body["heads"] == {"0": {"seq": 7, "hash": "a" * 64}}


def test_an_edited_checkpoint_body_fails_its_signature() -> None:
    document = _signed()
    fields = document["checkpoint"]
    assert isinstance(fields, dict)
    fields["body"] = fields["body"].replace('"seq":7', '"seq":9')
    record = check("id", document, {"c1": KEY})
    assert not record.valid and record.problem == "its signature does not match its body"


def test_a_checkpoint_signed_with_an_unknown_key_is_not_trusted() -> None:
    forged = signed_document(Key("c9", b"x" * 32), json.loads(json.dumps(heads_body("a", {}, NOW))))
    record = check("id", forged, {"c1": KEY})
    assert not record.valid and "unknown key 'c9'" in str(record.problem)


def test_the_checkpoint_key_must_differ_from_the_pseudonymisation_key() -> None:
    with pytest.raises(ConfigError, match=r"GUETTEUR_CHECKPOINT_KEY: .* must differ"):
        ensure_separate([KEY], [Key("k1", KEY.secret)])
    ensure_separate([KEY], [Key("k1", b"y" * 32)])


@pytest.mark.parametrize(
    ("now", "months", "expected"),
    [
        (NOW, 12, date(2025, 11, 23)),
        (NOW, 6, date(2026, 5, 23)),
        (datetime(2026, 3, 31, tzinfo=UTC), 1, date(2026, 2, 28)),
        (datetime(2026, 1, 15, tzinfo=UTC), 12, date(2025, 1, 15)),
    ],
)
def test_cutoff_is_the_same_day_months_ago(now: datetime, months: int, expected: date) -> None:
    assert cutoff(now, months) == expected

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from detectors.models import AccessEvent, Action, Role

CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "contract"


def _examples() -> list[str]:
    return (CONTRACT / "examples.jsonl").read_text().splitlines()


def test_contract_folder_is_beside_the_checkout() -> None:
    assert (CONTRACT / "access-event.schema.json").is_file(), f"expected the contract at {CONTRACT}"


@pytest.mark.parametrize("line", _examples() if CONTRACT.exists() else [])
def test_every_contract_example_validates(line: str) -> None:
    event = AccessEvent.model_validate_json(line)
    assert event.timestamp.utcoffset() is not None


def test_defaults_follow_the_contract() -> None:
    event = AccessEvent.model_validate_json(
        '{"event_id":"e","timestamp":"2026-11-16T10:00:00Z","source":"x","action":"view",'
        '"actor":{"id":"a","role":"secretary"}}'
    )
    assert event.outcome == "success" and event.record_count == 1 and event.automated is False
    assert event.action is Action.VIEW and event.actor.role is Role.SECRETARY


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ('"timestamp":"2026-11-16T10:00:00"', "timestamp"),
        ('"action":"peek"', "action"),
        ('"record_count":-1', "record_count"),
        ('"record_count":"5"', "record_count"),
        ('"unknown_field":1', "unknown_field"),
    ],
)
def test_contract_violations_are_rejected_with_the_field(patch: str, where: str) -> None:
    base = {
        "event_id": '"e"',
        "timestamp": '"2026-11-16T10:00:00Z"',
        "source": '"x"',
        "action": '"view"',
        "actor": '{"id":"a","role":"secretary"}',
    }
    key = patch.split(":", 1)[0].strip('"')
    base[key] = patch.split(":", 1)[1]
    raw = "{" + ",".join(f'"{k}":{v}' for k, v in base.items()) + "}"
    with pytest.raises(ValidationError) as caught:
        AccessEvent.model_validate_json(raw)
    assert where in str(caught.value)

"""Stored documents: ECS names, no raw patient id, and nothing the strict mapping would refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.models import AccessEvent
from streams.history.chain import START, link
from streams.history.document import history_document, month_index
from streams.history.templates import mapped_fields, templates
from streams.keys import Key
from streams.pseudonym import Pseudonymizer, pseudonymise
from streams.settings import Settings
from tests.helpers import MINIMAL_EVENT

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "contract" / "examples.jsonl"
PSEUDONYMIZER = Pseudonymizer(Key("k1", b"0123456789abcdef0123456789abcdef"))
INGESTED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _event(**fields: Any) -> AccessEvent:
    return AccessEvent.model_validate_json(json.dumps({**MINIMAL_EVENT, **fields}))


def _examples() -> list[AccessEvent]:
    lines = EXAMPLES.read_text().splitlines()
    return [AccessEvent.model_validate_json(line) for line in lines if line.strip()]


def _leaf_paths(document: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and key != "attributes":
            paths |= _leaf_paths(value, path + ".")
        else:
            paths.add(path)
    return paths


def test_every_field_of_every_contract_example_is_mapped() -> None:
    history = templates(Settings())["guetteur-access-history"]
    mapped = mapped_fields(history)
    produced: set[str] = set()
    for event in _examples():
        document, _ = link(
            history_document(pseudonymise(event, PSEUDONYMIZER), INGESTED), 0, 0, START
        )
        produced |= _leaf_paths(document)
    assert produced - mapped == set()
    assert {"@timestamp", "event.action", "event.outcome", "user.id", "user.roles"} <= produced
    assert {"source.ip", "source.geo.country_iso_code", "health.patient.pseudonym"} <= produced


def test_the_raw_patient_id_is_replaced_by_its_pseudonym() -> None:
    event = _event(patient_id="P-10045")
    document = history_document(pseudonymise(event, PSEUDONYMIZER), INGESTED)
    assert "P-10045" not in json.dumps(document)
    assert document["health"]["patient"]["pseudonym"] == PSEUDONYMIZER.pseudonym("P-10045")


def test_a_minimal_event_stores_only_what_was_said_plus_defaults() -> None:
    document = history_document(_event(), INGESTED)
    assert document == {
        "@timestamp": "2026-11-16T10:00:00+01:00",
        "event": {
            "id": "e-1",
            "action": "view",
            "outcome": "success",
            "provider": "practice_app",
            "ingested": "2026-11-23T12:00:00+00:00",
        },
        "user": {"id": "dr-martin", "roles": ["practitioner"]},
        "health": {"record_count": 1, "automated": False},
    }


def test_monthly_index_follows_event_time_in_utc() -> None:
    settings = Settings(index_prefix="g")
    event = _event(timestamp="2026-12-01T00:30:00+01:00")
    assert month_index(settings, event) == "g-access-history-2026.11"


def test_templates_attach_monthly_indices_to_the_read_alias() -> None:
    history = templates(Settings(index_prefix="g"))["g-access-history"]
    assert history["index_patterns"] == ["g-access-history-*"]
    assert history["template"]["aliases"] == {"g-access-history": {}}
    assert history["template"]["mappings"]["dynamic"] == "strict"
    assert isinstance(history["version"], int)

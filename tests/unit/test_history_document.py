"""Stored documents: ECS names, no raw patient id, and nothing the strict mapping would refuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.models import AccessEvent
from streams.history.chain import START, Position, link
from streams.history.document import history_document, month_index
from streams.history.templates import mapped_fields, templates
from streams.keys import Key
from streams.pseudonym import Pseudonymizer, pseudonymise
from streams.settings import Settings
from tests.helpers import MINIMAL_EVENT

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "contract" / "examples.jsonl"
PSEUDONYMIZER = Pseudonymizer(Key("k1", b"0123456789abcdef0123456789abcdef"))
CHAIN_KEY = Key("c1", b"chain-key-for-tests-0123456789abcdef")
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
        unlinked = history_document(pseudonymise(event, PSEUDONYMIZER), INGESTED)
        document, _ = link(unlinked, Position("access-events", 0, 0), START, CHAIN_KEY)
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


def _reference_document(event: AccessEvent, ingested: datetime) -> dict[str, Any]:
    """The document as first written: every object built whole, then pruned recursively of
    None and of the objects left empty (never inside ``attributes``)."""

    def pruned(value: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(item, dict) and key != "attributes":
                item = pruned(item)
                if not item:
                    continue
            if item is not None:
                out[key] = item
        return out

    data = event.model_dump(mode="json", exclude_none=True)
    actor = data["actor"]
    document = history_document(event, ingested)
    document.pop("source", None)
    document.pop("health")
    source = pruned({"ip": actor.get("ip"), "geo": {"country_iso_code": actor.get("country")}})
    if source:
        document["source"] = source
    health = {
        "actor": {"organization": actor.get("organization")},
        "practice": {"id": data.get("practice_id")},
        "patient": (
            {"pseudonym": event.patient_id, "key": {"id": event.patient_id.partition(":")[0]}}
            if event.patient_id is not None
            else None
        ),
        "data_category": data.get("data_category"),
        "record_count": data["record_count"],
        "session": {"id": data.get("session_id")},
        "ticket": {"id": data.get("ticket_id")},
        "automated": data["automated"],
        "purpose": data.get("purpose"),
        "export": {
            "destination": data.get("destination"),
            "fields": data.get("fields"),
            "authorization_ref": data.get("authorization_ref"),
        },
        "consent": data.get("consent"),
        "attributes": data.get("attributes"),
    }
    document["health"] = pruned(health)
    return document


def test_documents_are_built_as_the_recursive_pruning_built_them() -> None:
    """The document is built field by field (faster); it must equal what pruning gave, on the
    contract's examples, a simulated week and edge cases (empty objects, empty attributes)."""
    from streams.demo.simulate import simulate

    events = _examples() + [
        AccessEvent.model_validate(raw, strict=False)
        for raw in simulate(practices=3, days=7, seed=2).events
    ]
    events += [
        _event(attributes={}),
        _event(attributes={"nested": {"empty": {}}, "none": None}),
        _event(consent={}),
        _event(fields=[]),
        _event(destination="", ticket_id=""),
        _event(actor={"id": "a", "role": "admin", "country": "FR"}),
        _event(actor={"id": "a", "role": "admin", "ip": "10.0.0.1", "organization": "x"}),
    ]
    for event in events:
        event = pseudonymise(event, PSEUDONYMIZER)
        assert history_document(event, INGESTED) == _reference_document(event, INGESTED)


def test_a_document_names_the_key_its_pseudonym_was_made_with() -> None:
    event = pseudonymise(_event(patient_id="P-1"), PSEUDONYMIZER)
    document = history_document(event, INGESTED, PSEUDONYMIZER.fingerprints())
    key = PSEUDONYMIZER.current
    assert document["health"]["patient"] == {
        "pseudonym": event.patient_id,
        "key": {"id": key.key_id, "fingerprint": key.fingerprint},
    }
    assert key.secret.decode() not in json.dumps(document)

"""Property-based tests: whatever arrives, the FHIR and ATNA mappings return events or
refusals, never an exception (an exception in the agent would lose its batch), and every event
they return has every field the contract requires (never half-built)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import atna, fhir
from adapters.common import Translation
from adapters.table import MappingPolicy
from detectors.models import Role

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FHIR_DOCUMENTS = [json.loads(p.read_text()) for p in sorted(FIXTURES.rglob("*.json"))]
ATNA_MESSAGES = [p.read_text() for p in sorted(FIXTURES.rglob("*.xml"))]
TABLE = MappingPolicy(person_role=Role.PRACTITIONER)
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["Patient/p-1", "0", "2026-11-20T09:30:00Z", "0001-01-01", "read", "R"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def well_formed(result: Translation) -> None:
    assert result.events or result.refusals
    for refusal in result.refusals:
        assert refusal.element and refusal.problem
    for event in result.events:
        assert event["event_id"] and len(event["event_id"]) <= 128
        # Everything the contract requires is there; the rest (a year-1 timestamp, say) is
        # the ingest path's to judge, with its own reason.
        required = [event["timestamp"], event["source"], event["action"], *event["actor"].values()]
        assert all(isinstance(value, str) and value for value in required)
        json.dumps(event)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """A published AuditEvent with one element, at any depth, replaced by anything."""
    document: Any = json.loads(json.dumps(draw(st.sampled_from(FHIR_DOCUMENTS))))
    node = document
    for _ in range(draw(st.integers(0, 4))):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        children = [k for k in keys if isinstance(node[k], dict | list) and node[k]]
        if not children:
            break
        node = node[draw(st.sampled_from(children))]
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    if keys:
        node[draw(st.sampled_from(keys))] = draw(json_values)
    return dict(document)


@PROFILE
@given(mutated())
def test_a_mutated_audit_event_maps_or_is_refused(document: dict[str, Any]) -> None:
    well_formed(fhir.translate(json.dumps(document).encode(), TABLE))


@PROFILE
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_any_json_object_as_an_audit_event_maps_or_is_refused(fields: dict[str, Any]) -> None:
    raw = json.dumps({"resourceType": "AuditEvent", **fields}).encode()
    well_formed(fhir.translate(raw, TABLE))


@PROFILE
@given(st.lists(mutated(), max_size=3), st.sampled_from(["batch", "transaction", None]))
def test_a_bundle_of_anything_maps_or_is_refused(entries: list[Any], kind: str | None) -> None:
    bundle = {"resourceType": "Bundle", "type": kind, "entry": [{"resource": e} for e in entries]}
    result = fhir.translate(json.dumps(bundle).encode(), TABLE)
    assert result.events or result.refusals or not entries


@PROFILE
@given(st.binary(max_size=200))
def test_any_bytes_map_or_are_refused(raw: bytes) -> None:
    well_formed(fhir.translate(raw, TABLE))
    well_formed(atna.translate(raw, TABLE))


@PROFILE
@given(
    st.sampled_from(ATNA_MESSAGES),
    st.integers(0, 4000),
    st.integers(0, 60),
    st.text(alphabet='<>/"=& ;\n\x00\ufeffAZaz019:-+"', max_size=40),
)
def test_a_spliced_atna_message_maps_or_is_refused(
    message: str, at: int, cut: int, insert: str
) -> None:
    at = min(at, len(message))
    spliced = message[:at] + insert + message[at + cut :]
    well_formed(atna.translate(spliced.encode("utf-8", errors="surrogatepass"), TABLE))

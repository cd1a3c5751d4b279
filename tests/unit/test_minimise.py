"""Minimisation at ingestion (``streams.minimise``): identifiers out of every stored free-text
field, attributes only as the policy allows, hostile text handled in linear time."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from detectors.models import AccessEvent
from detectors.policy import ExportPolicy, PolicyError, PrivacyPolicy, parse_policy
from streams.keys import Key
from streams.minimise import Minimiser, Redaction
from streams.pseudonym import Pseudonymizer
from tests.helpers import MINIMAL_EVENT

PSEUDONYMIZER = Pseudonymizer(Key("k1", b"minimise-test-key-0123456789abcdef01"))
RAW = "P-777777"
NIR = "1 85 05 75 123 456 78"
EMAIL = "jean.dupont@gmail.com"
PHONE = "+33 6 12 34 56 78"
IBAN = "FR76 3000 6000 0112 3456 7890 189"
FREE_TEXT = f"opened chart of {RAW} (Jean Dupont, NIR {NIR}) {EMAIL} {PHONE} {IBAN}"
SECRETS = [RAW, NIR, EMAIL, PHONE, IBAN, "7777", "123 456", "dupont@", "3000 6000"]


def _minimiser(**privacy: Any) -> Minimiser:
    exports = ExportPolicy(destinations={"any": ["sftp://partner.example/*"]})
    return Minimiser(PrivacyPolicy(**privacy), exports, PSEUDONYMIZER)


def _event(**fields: Any) -> AccessEvent:
    return AccessEvent.model_validate_json(json.dumps({**MINIMAL_EVENT, **fields}))


def _everywhere(text: str) -> AccessEvent:
    """The text planted in every free-text field the contract has."""
    return _event(
        event_id=f"e-{text}"[:128],
        source=f"app {text}"[:64],
        patient_id=RAW,
        practice_id=f"prac {text}"[:128],
        session_id=f"s {text}"[:128],
        ticket_id=f"t {text}"[:128],
        destination=f"email:{text}"[:128],
        authorization_ref=f"auth {text}"[:128],
        fields=[text[:128], "birth_date"],
        actor={"id": f"a {text}"[:128], "role": "support_agent", "organization": text[:128]},
        attributes={"note": text, "pseudonymised": True, "nested": {text[:20]: [text]}},
    )


def _stored_text(event: AccessEvent) -> str:
    return event.model_dump_json()


def test_every_identifier_in_every_free_text_field_is_pseudonymised() -> None:
    minimiser = _minimiser(attributes={"*": ["note", "nested", "pseudonymised"]})
    for text in (FREE_TEXT, f"{RAW}/{EMAIL}", NIR.replace(" ", ""), PHONE.replace(" ", ".")):
        event, redactions = minimiser.protect(_everywhere(text))
        stored = _stored_text(event)
        leaked = [s for s in SECRETS if s in text and s in stored]
        assert leaked == [], (text, stored)
        assert event.patient_id == PSEUDONYMIZER.pseudonym(RAW)
        assert redactions and (RAW not in text or "patient_id" in {r.kind for r in redactions})


def test_tokens_are_keyed_and_stable_so_detection_still_groups() -> None:
    minimiser = _minimiser()
    first, _ = minimiser.protect(_event(ticket_id=f"T-1 {EMAIL}"))
    again, _ = minimiser.protect(_event(ticket_id=f"T-1 {EMAIL}"))
    other, _ = Minimiser(
        PrivacyPolicy(),
        ExportPolicy(),
        Pseudonymizer(Key("k2", b"another-key-0123456789abcdef0123")),
    ).protect(_event(ticket_id=f"T-1 {EMAIL}"))
    assert first.ticket_id == again.ticket_id != other.ticket_id
    assert first.ticket_id is not None and first.ticket_id.startswith("T-1 [email:k1:")


def test_attributes_are_dropped_unless_allowed_for_their_source() -> None:
    event = _event(
        source="practice_app",
        patient_id=RAW,
        attributes={"note": FREE_TEXT, "pseudonymised": True},
    )
    kept, redactions = _minimiser().protect(event)
    assert kept.attributes == {"pseudonymised": True}  # the default: only what detection reads
    assert Redaction("attributes", "attribute_dropped") in redactions
    allowed = _minimiser(attributes={"practice_app": ["note"]})
    kept, _ = allowed.protect(event)
    assert kept.attributes is not None and set(kept.attributes) == {"note"}
    assert RAW not in kept.attributes["note"] and "Jean Dupont" in kept.attributes["note"]


def test_deployment_patient_id_patterns_catch_other_patients() -> None:
    minimiser = _minimiser(patient_id_patterns=[r"P-[0-9]{6}"])
    event, redactions = minimiser.protect(_event(patient_id=RAW, ticket_id="about P-123456"))
    assert event.ticket_id is not None and "P-123456" not in event.ticket_id
    assert Redaction("ticket_id", "patient_id") in redactions


def test_a_declared_destination_is_kept_so_the_allowlist_still_matches() -> None:
    declared = "sftp://partner.example/drop/jean.dupont@gmail.com"
    event, _ = _minimiser().protect(_event(destination=declared))
    assert event.destination == declared
    event, _ = _minimiser().protect(_event(destination=f"email:{EMAIL}"))
    assert event.destination is not None and EMAIL not in event.destination


def test_a_field_full_of_identifiers_becomes_one_token() -> None:
    many = " ".join(f"a{n}@x.fr" for n in range(18))[:128]
    event, _ = _minimiser().protect(_event(event_id=many))
    assert len(event.event_id) < 64 and "@" not in event.event_id


def test_events_without_identifiers_are_returned_untouched() -> None:
    event = _event(ticket_id="T-20931", practice_id="prac-75-0012")
    protected, redactions = _minimiser().protect(event)
    assert redactions == [] and protected.ticket_id == "T-20931"
    assert protected.practice_id == "prac-75-0012"


@pytest.mark.parametrize(
    "hostile",
    ["a" * 64_000, "1" * 64_000, "a." * 32_000, "FR76 " * 12_800, "a@" * 32_000, "0 " * 32_000],
)
def test_hostile_text_is_scanned_in_linear_time(hostile: str) -> None:
    """A quadratic pattern would let one message stall the worker (64 KiB: seconds)."""
    started = time.process_time()
    _minimiser().scrub_text(hostile)
    assert time.process_time() - started < 1.0


def test_deep_and_wide_attributes_are_walked() -> None:
    deep: Any = RAW
    for _ in range(60):
        deep = {"k": [deep]}
    event, _ = _minimiser(attributes={"*": ["deep"]}).protect(
        _event(patient_id=RAW, attributes={"deep": deep, "huge": 10**300})
    )
    assert RAW not in _stored_text(event)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [("P-[", "not a regular expression"), ("(P)-1", "capturing"), ("x*", "empty string")],
)
def test_a_bad_patient_id_pattern_names_the_key(pattern: str, problem: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy({"privacy": {"patient_id_patterns": [pattern]}})
    assert "privacy.patient_id_patterns" in str(refused.value) and problem in str(refused.value)

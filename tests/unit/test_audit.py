"""Search filters and report sentences (no server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from detectors.models import AccessEvent
from streams.audit.query import Filters, history_query
from streams.audit.report import Consent, sentence
from streams.audit.watch import audit_event
from streams.decode import decode


def test_filters_become_exact_term_filters_on_the_history_fields() -> None:
    query = history_query(
        Filters(
            patients=("k2:abc", "k1:def"),
            actor="sup-ma-042",
            action=("export", "download"),
            start=datetime(2026, 11, 1, tzinfo=UTC),
        )
    )
    assert query == {
        "bool": {
            "filter": [
                {"terms": {"health.patient.pseudonym": ["k2:abc", "k1:def"]}},
                {"term": {"user.id": "sup-ma-042"}},
                {"terms": {"event.action": ["export", "download"]}},
                {"range": {"@timestamp": {"gte": "2026-11-01T00:00:00+00:00"}}},
            ]
        }
    }
    assert history_query(Filters()) == {"match_all": {}}


def test_a_support_access_reads_as_a_sentence_with_its_consent_and_alert() -> None:
    row = {
        "time": "2026-11-16T10:16:02+01:00",
        "actor": "sup-ma-042",
        "role": "support_agent",
        "organization": "support-outsourcing",
        "action": "view",
        "category": "medical",
        "practice": "prac-75-0012",
        "session": "rs-5531",
        "ticket": "T-20931",
        "outcome": "success",
        "records": 1,
        "destination": None,
        "consent": Consent("dr-martin", "10:15:20", ["appointment"], "view_only").describe(),
        "alerts": "support.out_of_scope",
    }
    assert sentence(row) == (
        "2026-11-16T10:16:02+01:00: sup-ma-042 (support agent of support-outsourcing) viewed "
        "medical data at practice prac-75-0012, in session rs-5531 (ticket T-20931), under the "
        "consent given by dr-martin at 10:15:20 (scope: appointment; view only). "
        "ALERT: support.out_of_scope."
    )


def test_a_search_is_recorded_with_pseudonymous_filters_only() -> None:
    event = audit_event("dpo", "search", Filters(patients=("k1:abc",)), 3, patient_raw="P-1")
    assert event["source"] == "guetteur" and event["actor"] == {"id": "dpo", "role": "admin"}
    assert event["attributes"]["guetteur_audit"]["filters"] == {"patients": ["k1:abc"]}
    assert event["patient_id"] == "P-1"  # pseudonymised at ingestion, like any event
    assert event["record_count"] == 3
    assert isinstance(decode(json.dumps(event).encode()), AccessEvent)  # a valid contract event

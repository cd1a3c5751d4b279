"""Search filters and report sentences (no server)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime

import pytest

from detectors.models import AccessEvent
from streams.audit.query import Filters, history_query
from streams.audit.report import Consent, sentence
from streams.audit.watch import AuditNotRecordedError, Looker, audit_event, cli_looker, record
from streams.decode import decode
from streams.settings import Settings


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


def test_a_search_is_recorded_with_the_proven_identity_and_pseudonymous_filters_only() -> None:
    looker = Looker("claire", "auditor", "os_user", stated_as="on behalf of the DPO")
    filters = Filters(patients=("k1:abc",))
    event = audit_event(looker, "search", filters, 3, "h-access-history", patient_raw="P-1")
    assert event["source"] == "guetteur" and event["actor"] == {"id": "claire", "role": "admin"}
    assert event["attributes"]["guetteur_audit"] == {
        "kind": "search",
        "index": "h-access-history",
        "filters": {"patients": ["k1:abc"]},
        "role": "auditor",
        "proven_by": "os_user",
        "stated_as": "on behalf of the DPO",
    }
    assert event["patient_id"] == "P-1"  # pseudonymised at ingestion, like any event
    assert event["record_count"] == 3
    assert isinstance(decode(json.dumps(event).encode()), AccessEvent)  # a valid contract event


def test_the_command_line_identity_is_the_os_user_and_as_is_only_a_stated_purpose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "os-claire")
    looker = cli_looker(Settings(auditor_role="analyst"), stated_as="dpo-jean")
    assert looker == Looker("os-claire", "analyst", "os_user", "dpo-jean")


def test_a_look_whose_record_the_worker_would_refuse_is_refused_before_any_data() -> None:
    """A 200-character practice id: its audit record breaks the contract, so no record, no data."""
    looker = Looker("claire", "auditor", "os_user")
    event = audit_event(looker, "search", Filters(practice="p" * 200), 0, "h")
    with pytest.raises(AuditNotRecordedError) as refused:
        record(Settings(kafka_bootstrap="127.0.0.1:1"), event)  # never reaches Kafka
    assert refused.value.invalid and "practice_id" in str(refused.value)


def test_a_look_that_kafka_cannot_acknowledge_is_refused() -> None:
    looker = Looker("claire", "auditor", "os_user")
    event = audit_event(looker, "search", Filters(), 0, "h")
    with pytest.raises(AuditNotRecordedError) as refused:
        record(Settings(kafka_bootstrap="127.0.0.1:1", audit_record_seconds=1), event)
    assert not refused.value.invalid and "Kafka" in str(refused.value)

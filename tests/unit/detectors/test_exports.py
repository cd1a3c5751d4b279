"""Export volume, destinations and re-identification risk."""

from __future__ import annotations

from typing import Any

from detectors.models import AccessEvent
from tests.unit.detectors.helpers import at, ev, fired, run

VOLUME = "export.unusual_volume"
DESTINATION = "export.unapproved_destination"
REID = "export.reidentification_risk"
ADMIN = {"id": "adm-paul", "role": "admin"}
OBSERVATORY = {"id": "svc-observatory", "role": "service"}


def _export(when: str, records: int, **fields: Any) -> AccessEvent:
    return ev("export", fields.pop("actor", ADMIN), when, record_count=records, **fields)


def test_a_first_huge_export_fires_on_the_floor_alone() -> None:
    big = _export(at(0), 1840)
    [alert] = fired(run([big]), VOLUME)
    assert "1840 patient records within 24 h" in alert.summary


def test_small_exports_stay_under_the_floor() -> None:
    assert fired(run([_export(at(minutes=n), 100) for n in range(4)]), VOLUME) == []


def test_the_window_sums_several_exports() -> None:
    exports = [_export(at(minutes=10 * n), 200) for n in range(3)]
    [alert] = fired(run(exports), VOLUME)
    assert alert.event_ids == [exports[2].event_id]  # the one that crossed the floor


def test_an_actor_with_a_big_habit_is_judged_against_it() -> None:
    habit = [_export(at(days=-d), 1000) for d in range(1, 31)]  # the first ones fire (cold)

    def flagged(export: AccessEvent) -> bool:
        alerts = fired(run([*habit, export]), VOLUME)
        return any(export.event_id in alert.event_ids for alert in alerts)

    assert not flagged(_export(at(0), 1500))  # 1.5x their usual day
    assert flagged(_export(at(0), 12000))  # 12x


def test_every_destination_is_denied_until_declared() -> None:
    export = _export(at(0), 10, destination="usb", purpose="migration")
    [alert] = fired(run([export]), DESTINATION)
    assert "to usb (purpose: migration)" in alert.summary
    allowed = {"destinations": {"migration": ["sftp://new-vendor.example/*"]}}
    ok = _export(at(0), 10, destination="sftp://new-vendor.example/p1", purpose="migration")
    assert fired(run([ok], export=allowed), DESTINATION) == []
    assert fired(run([export], export=allowed), DESTINATION)


def _research(when: str = at(0), **fields: Any) -> AccessEvent:
    base = {
        "actor": OBSERVATORY,
        "purpose": "research",
        "destination": "sftp://partner-research.example",
        "authorization_ref": "CNIL-2026-001",
        "data_category": "medical",
    }
    return _export(when, 1000, **{**base, **fields})


def test_a_persistent_key_with_quasi_identifiers_is_re_identifiable() -> None:
    export = _research(fields=["patient_key", "birth_date", "gender", "postcode", "diagnosis"])
    [alert] = fired(run([export]), REID)
    assert "persistent key (patient_key) with quasi-identifiers" in alert.summary


def test_direct_identifiers_and_missing_authorisation_are_reported() -> None:
    export = _research(fields=["last_name", "diagnosis"], authorization_ref=None)
    [alert] = fired(run([export]), REID)
    assert "direct identifiers (last_name)" in alert.summary
    assert "no authorization reference" in alert.summary


def test_an_aggregate_research_export_is_quiet() -> None:
    assert fired(run([_research(fields=["age_band", "diagnosis"])]), REID) == []


def test_the_same_patient_key_leaving_two_practices_is_linkable() -> None:
    first = _research(fields=["diagnosis"], patient_id="K-1", practice_id="prac-1")
    second = _research(at(days=3), fields=["diagnosis"], patient_id="K-1", practice_id="prac-2")
    alerts = fired(run([first, second]), REID)
    assert [a.event_ids for a in alerts] == [[second.event_id]]
    assert "also exported from prac-1" in alerts[0].summary
    other_patient = _research(fields=["diagnosis"], patient_id="K-2", practice_id="prac-2")
    assert fired(run([first, other_patient]), REID) == []

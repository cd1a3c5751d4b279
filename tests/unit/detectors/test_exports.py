"""Export volume, destinations and re-identification risk."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from detectors.alerts import Alert, merge
from detectors.models import AccessEvent
from detectors.policy import Policy
from detectors.registry import all_detectors
from detectors.runner import Runner
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
    assert "more than 500 patient records within 24 h (this one: export of 1840" in alert.summary


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
    assert "another practice had exported within the previous" in alerts[0].summary
    other_patient = _research(fields=["diagnosis"], patient_id="K-2", practice_id="prac-2")
    assert fired(run([first, other_patient]), REID) == []


def _stepped(events: list[AccessEvent], then: str | None = None) -> list[Alert]:
    """What the detectors say on reading the events in this order, the clock not moving until
    they are all read (then to ``then``, if given)."""
    runner = Runner(all_detectors(Policy()))
    alerts: list[Alert] = []
    for event in events:
        for name, key in runner.routes(event):
            alerts += runner.step(name, key, event)
    if then is not None:
        alerts += runner.advance(datetime.fromisoformat(then))
    return alerts


def _incidents(alerts: list[Alert]) -> dict[str, Alert]:
    merged: dict[str, Alert] = {}
    for alert in alerts:
        known = merged.get(alert.alert_id)
        merged[alert.alert_id] = alert if known is None else merge(known, alert)
    return merged


def test_a_volume_crossed_alerts_without_waiting_for_lateness() -> None:
    exports = [_export(at(minutes=10 * n), 200) for n in range(3)]
    [alert] = fired(_stepped(exports), VOLUME)
    assert alert.event_ids == [exports[2].event_id]


def test_a_linkage_seen_alerts_without_waiting_for_lateness() -> None:
    first = _research(fields=["diagnosis"], patient_id="K-1", practice_id="prac-1")
    second = _research(at(days=3), fields=["diagnosis"], patient_id="K-1", practice_id="prac-2")
    [alert] = fired(_stepped([first, second]), REID)
    assert alert.event_ids == [second.event_id]


def test_late_exports_end_in_the_same_incidents_as_in_order() -> None:
    """Judged at once when certain, at the deadline otherwise: arrival order changes when an
    incident alerts, never what it ends up holding."""
    exports = [_export(at(minutes=10 * n), 200) for n in range(4)]
    # Small: their volume stays under the floor (an episode of volume findings days apart,
    # delivered out of order by days, may be two incidents: see the episode tests below).
    linked = [
        _research(
            at(days=d), fields=["diagnosis"], patient_id="K-1", practice_id=f"prac-{d}"
        ).model_copy(update={"record_count": 10})
        for d in range(1, 4)
    ]
    later = at(days=10)
    in_order = _incidents(_stepped([*exports, *linked], then=later))
    shuffled = [exports[3], exports[1], linked[2], exports[0], linked[0], exports[2], linked[1]]
    assert _incidents(_stepped(shuffled, then=later)) == in_order
    assert _incidents(run(shuffled)) == in_order  # and the offline runner agrees
    assert {a.rule_id for a in in_order.values()} >= {VOLUME, REID}


def test_an_actor_who_stays_over_the_threshold_is_one_incident() -> None:
    """Issue 13: every later export inside the window used to open a new incident each hour."""
    exports = [_export(at(minutes=30 * n), 300) for n in range(20)]  # 10 h, over from the 2nd
    [incident] = _incidents(run(exports)).values()
    assert incident.rule_id == VOLUME and incident.event_count == 19
    assert incident.summary.endswith("(19 events in this incident)")


def test_a_whole_window_without_findings_ends_the_incident() -> None:
    first = [_export(at(minutes=30 * n), 300) for n in range(3)]
    again = [_export(at(days=2, minutes=30 * n), 300) for n in range(3)]
    incidents = sorted(_incidents(run([*first, *again])).values(), key=lambda a: a.timestamp)
    assert [a.event_count for a in incidents] == [2, 2]
    assert incidents[0].alert_id != incidents[1].alert_id


def test_an_episode_delivered_out_of_order_within_the_lateness_is_the_same_incident() -> None:
    exports = [_export(at(seconds=10 * n), 300) for n in range(6)]
    in_order = _incidents(_stepped(exports, then=at(days=3)))
    shuffled = [exports[n] for n in (1, 0, 3, 2, 5, 4)]
    assert _incidents(_stepped(shuffled, then=at(days=3))) == in_order
    assert len(in_order) == 1

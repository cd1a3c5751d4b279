"""Role policy and care relationship."""

from __future__ import annotations

from detectors.models import AccessEvent
from tests.unit.detectors.helpers import DOCTOR, SECRETARY, at, ev, fired, run

ROLE = "access.role_not_permitted"
CARE = "access.no_care_relationship"
SERVICE = {"id": "svc-reminders", "role": "service"}


def test_a_secretary_reading_medical_data_fires() -> None:
    read = ev("view", SECRETARY, at(0), patient_id="P-1", data_category="medical")
    [alert] = fired(run([read]), ROLE)
    assert alert.summary.startswith("secretary sec-anne performed 'view' on medical data")


def test_a_secretary_at_the_front_desk_is_quiet() -> None:
    events = [
        ev("view", SECRETARY, at(n), patient_id="P-1", data_category=category)
        for n, category in enumerate(["identity", "appointment", "billing", "administrative"])
    ]
    assert fired(run(events), ROLE) == []


def test_services_get_only_what_their_purpose_needs() -> None:
    reminder = ev("view", SERVICE, at(0), patient_id="P-1", data_category="appointment")
    snooping = ev("view", SERVICE, at(1), patient_id="P-1", data_category="medical")
    [alert] = fired(run([reminder, snooping]), ROLE)
    assert alert.event_ids == [snooping.event_id]


def test_role_policy_is_configuration() -> None:
    read = ev("view", SECRETARY, at(0), patient_id="P-1", data_category="medical")
    assert fired(run([read], roles={"secretary": ["medical"]}), ROLE) == []


def _booking(when: str, patient: str = "P-1", practice: str = "prac-1") -> AccessEvent:
    booker = {"id": "pat-web", "role": "patient"}
    return ev(
        "create",
        booker,
        when,
        source="booking",
        patient_id=patient,
        practice_id=practice,
        data_category="appointment",
    )


def _read(when: str, patient: str = "P-1", actor: dict[str, str] = DOCTOR) -> AccessEvent:
    return ev("view", actor, when, patient_id=patient, data_category="medical")


def test_reading_a_patient_with_a_recent_appointment_is_quiet() -> None:
    assert run([_booking(at(days=-10)), _read(at(0))]) == []


def test_reading_a_patient_with_no_appointment_fires() -> None:
    read = _read(at(0))
    [alert] = run([read])
    assert alert.rule_id == CARE and alert.event_ids == [read.event_id]
    assert "no appointment or consultation there" in alert.summary


def test_an_appointment_booked_just_after_the_read_covers_it() -> None:
    assert run([_read(at(0)), _booking(at(minutes=30))]) == []


def test_an_appointment_too_old_or_too_late_does_not_cover() -> None:
    assert fired(run([_booking(at(days=-31)), _read(at(0))]), CARE)
    assert fired(run([_read(at(0)), _booking(at(days=2))]), CARE)


def test_an_appointment_at_another_practice_does_not_cover() -> None:
    assert fired(run([_booking(at(days=-1), practice="prac-2"), _read(at(0))]), CARE)


def test_a_teleconsultation_is_a_care_relationship() -> None:
    visit = ev("session_start", DOCTOR, at(-600), source="teleconsultation", patient_id="P-1")
    assert run([visit, _read(at(0))]) == []


def test_care_window_is_configuration() -> None:
    events = [_booking(at(days=-31)), _read(at(0))]
    assert run(events, care={"days_before": 60}) == []

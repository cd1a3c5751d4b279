"""The four support rules, with the session lifecycle's edge cases."""

from __future__ import annotations

from detectors.alerts import Severity
from tests.unit.detectors.helpers import (
    DOCTOR,
    SUPPORT,
    at,
    ev,
    fired,
    run,
    session,
    support_view,
)

NO_CONSENT = "support.no_consent"


def test_a_view_inside_a_consented_session_is_quiet() -> None:
    assert run([*session(), support_view(60)]) == []


def test_a_view_with_no_consent_fires_with_a_readable_summary() -> None:
    access = support_view(60, "medical")
    [alert] = run([*session(consent_at=None), access])
    assert alert.rule_id == NO_CONSENT and alert.severity is Severity.HIGH
    assert alert.event_ids == [access.event_id]
    assert alert.actor_id == "sup-ma-042" and alert.practice_id == "prac-1"
    assert alert.summary == (
        "support agent sup-ma-042 viewed medical data of a patient at practice prac-1 in "
        "session rs-1, for which no consent was in force"
    )


def test_consent_arriving_a_few_seconds_after_the_first_access_covers_it() -> None:
    # Stamped 5 s after the access, and delivered after it: within the clock skew allowed.
    events = [*session(consent_at=None), support_view(60), *session(consent_at=65)[1:]]
    assert run(events) == []


def test_consent_long_after_the_access_does_not_cover_it() -> None:
    events = [*session(consent_at=None), support_view(60), *session(consent_at=600)[1:]]
    assert [a.rule_id for a in run(events)] == [NO_CONSENT]


def test_out_of_order_delivery_gives_the_same_alerts() -> None:
    events = [*session(consent_at=None), support_view(60), support_view(90)]
    late_consent = session(consent_at=30)[1:]
    assert run(events + late_consent) == run(late_consent + events) == []


def test_revoked_consent_no_longer_covers_later_accesses() -> None:
    revoke = ev("consent_revoked", DOCTOR, at(120), source="remote_support", session_id="rs-1")
    before, after = support_view(60), support_view(180)
    [alert] = run([*session(), before, revoke, after])
    assert alert.event_ids == [after.event_id]
    assert "after the consent had been revoked" in alert.summary


def test_expired_consent_no_longer_covers_later_accesses() -> None:
    events = [*session(expires_at=at(300)), support_view(60), support_view(400)]
    [alert] = run(events)
    assert "expired" in alert.summary


def test_access_after_session_end_fires() -> None:
    end = ev("session_end", SUPPORT, at(200), source="remote_support", session_id="rs-1")
    [alert] = run([*session(), end, support_view(260)])
    assert "after the session had ended" in alert.summary


def test_consent_from_another_practice_does_not_count() -> None:
    other = ev(
        "consent_granted",
        DOCTOR,
        at(20),
        practice_id="prac-2",
        source="remote_support",
        session_id="rs-1",
        consent={"mode": "view_only"},
    )
    events = [*session(consent_at=None), other, support_view(60)]
    assert [a.rule_id for a in run(events)] == [NO_CONSENT]


def test_consent_from_the_support_agent_themself_does_not_count() -> None:
    self_consent = ev(
        "consent_granted", SUPPORT, at(20), source="remote_support", session_id="rs-1"
    )
    assert fired(run([*session(consent_at=None), self_consent, support_view(60)]), NO_CONSENT)


def test_access_without_any_session_fires_at_once() -> None:
    access = ev("view", SUPPORT, at(0), patient_id="P-1", data_category="identity")
    [alert] = run([access])
    assert "outside any support session" in alert.summary


def test_lifecycle_events_alone_never_fire() -> None:
    end = ev("session_end", SUPPORT, at(100), source="remote_support", session_id="rs-1")
    assert run([*session(consent_at=None), end]) == []


def test_repeated_findings_in_one_session_are_one_alert() -> None:
    accesses = [support_view(60 + n, patient_id=f"P-{n}") for n in range(5)]
    [alert] = run([*session(consent_at=None), *reversed(accesses)])
    assert alert.event_count == 5
    assert alert.event_ids[0] == accesses[0].event_id  # the earliest evidence leads
    assert alert.summary.endswith("(5 events in this incident)")
    assert len(alert.patients) == 5


def test_non_view_actions_fire_even_with_consent() -> None:
    copy = support_view(60, action="copy")
    alerts = run([*session(), copy, support_view(70)])
    [alert] = fired(alerts, "support.non_view_action")
    assert alert.event_ids == [copy.event_id]
    assert "performed 'copy'" in alert.summary and "view-only" in alert.summary
    assert fired(alerts, NO_CONSENT) == []


def test_out_of_scope_fires_only_outside_the_consented_categories() -> None:
    medical = support_view(60, "medical")
    alerts = run([*session(scope=["appointment"]), support_view(50), medical])
    [alert] = alerts
    assert alert.rule_id == "support.out_of_scope" and alert.event_ids == [medical.event_id]
    assert "scope: appointment" in alert.summary


def test_unapproved_location_uses_the_allowlist() -> None:
    abroad = {**SUPPORT, "country": "US"}
    alerts = run([*session(), support_view(60, actor=abroad), support_view(70)])
    [alert] = fired(alerts, "support.unapproved_location")
    assert "from US" in alert.summary
    allow_us = {"allowed_countries": ["MA", "US"]}
    assert run([*session(), support_view(60, actor=abroad)], support=allow_us) == []

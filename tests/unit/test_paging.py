"""What a page looks like, and which incidents page."""

from __future__ import annotations

from datetime import UTC, datetime

from detectors.alerts import Alert, Severity
from streams.paging import Pager, alertmanager_alert
from streams.settings import Settings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _alert(severity: Severity = Severity.HIGH, **fields: object) -> Alert:
    base: dict[str, object] = {
        "alert_id": "a1",
        "rule_id": "support.no_consent",
        "severity": severity,
        "timestamp": datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
        "last_seen": datetime(2026, 11, 16, 9, 5, tzinfo=UTC),
        "actor_id": "sup-ma-042",
        "practice_id": None,
        "event_ids": ["e1", "e2"],
        "event_count": 2,
        "summary": "support agent sup-ma-042 viewed ...",
        "headline": "support agent sup-ma-042 viewed ...",
        "group": "session:p/s",
        "window_start": datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
    }
    return Alert.model_validate({**base, **fields})


def test_a_page_is_labelled_by_incident_and_resolves_after_the_quiet_period() -> None:
    settings = Settings(app_id="prod", page_resolve_seconds=600)
    page = alertmanager_alert(_alert(), settings, NOW)
    assert page["labels"] == {
        "alertname": "support.no_consent",
        "rule_id": "support.no_consent",
        "severity": "high",
        "alert_id": "a1",
        "actor_id": "sup-ma-042",
        "source": "guetteur",
        "guetteur_app": "prod",
    }  # no empty practice_id label: Alertmanager would drop it anyway
    assert page["endsAt"] == "2026-11-23T12:10:00+00:00"
    assert page["startsAt"] == "2026-11-16T09:00:00+00:00"
    assert page["annotations"]["events"] == "2"
    assert "a1" in page["generatorURL"]


def test_only_configured_severities_page_and_each_incident_once() -> None:
    pager = Pager(Settings(page_severities="critical"), None, None)  # type: ignore[arg-type]
    alerts = [
        _alert(Severity.HIGH, alert_id="h"),
        _alert(Severity.CRITICAL, alert_id="c", event_count=1, event_ids=["e1"]),
        _alert(Severity.CRITICAL, alert_id="c"),
    ]
    wanted = pager.wanted(alerts)
    assert [(a.alert_id, a.event_count) for a in wanted] == [("c", 2)]  # the latest version
    assert Pager(Settings(page_severities="off"), None, None).wanted(alerts) == []  # type: ignore[arg-type]

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


def test_pages_reach_alertmanager_and_the_webhook_and_survive_an_outage() -> None:
    """Against a real HTTP server: the first push fails (503), the pager waits and retries."""
    import asyncio

    import aiohttp
    from aiohttp import web

    from streams.backoff import Backoff
    from tests.helpers import free_ports

    received: list[tuple[str, object]] = []
    failures = {"left": 1}

    async def alertmanager(request: web.Request) -> web.Response:
        if failures["left"]:
            failures["left"] -= 1
            return web.Response(status=503, text="not ready")
        received.append(("alertmanager", await request.json()))
        return web.Response(status=200)

    async def webhook(request: web.Request) -> web.Response:
        received.append(("webhook", await request.json()))
        return web.Response(status=200)

    async def scenario() -> list[float]:
        port = free_ports(1)[0]
        app = web.Application()
        app.router.add_post("/api/v2/alerts", alertmanager)
        app.router.add_post("/hook", webhook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        pauses: list[float] = []

        async def sleep(seconds: float) -> None:
            pauses.append(seconds)

        settings = Settings(
            alertmanager_url=f"http://127.0.0.1:{port}",
            page_webhook_url=f"http://127.0.0.1:{port}/hook",
        )
        try:
            async with aiohttp.ClientSession() as session:
                pager = Pager(settings, session, Backoff(sleep=sleep))
                assert await pager.page([_alert()]) == 1
        finally:
            await runner.cleanup()
        return pauses

    pauses = asyncio.run(scenario())
    assert pauses == [0.5]  # one failure, one back-off
    assert [name for name, _ in received] == ["alertmanager", "webhook"]
    am_body, hook_body = received[0][1], received[1][1]
    assert isinstance(am_body, list) and am_body[0]["labels"]["alert_id"] == "a1"
    assert isinstance(hook_body, list) and hook_body[0]["rule_id"] == "support.no_consent"

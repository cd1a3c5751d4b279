"""What a page looks like, and which incidents page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from detectors.alerts import Alert, Severity
from streams.backoff import Backoff
from streams.paging import Pager, alertmanager_alert
from streams.settings import Settings
from tests.helpers import free_ports

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
        "incident_group": "session:p/s",
        "source": "guetteur",
        "guetteur_app": "prod",
    }
    assert page["annotations"]["actor_id"] == "sup-ma-042"
    assert "practice_id" not in page["annotations"]  # no empty annotation
    assert page["endsAt"] == "2026-11-23T12:10:00+00:00"
    assert page["startsAt"] == "2026-11-16T09:00:00+00:00"
    assert page["annotations"]["events"] == "2"
    assert "a1" in page["generatorURL"]


def test_an_incident_keeps_its_labels_whatever_its_updates_change() -> None:
    """Alertmanager tells alerts apart by labels: a changed label would be a second page."""
    settings = Settings()
    first = alertmanager_alert(_alert(practice_id="prac-1", actor_id="a"), settings, NOW)
    later = alertmanager_alert(
        _alert(practice_id="prac-2", actor_id="b", event_count=9, summary="more"), settings, NOW
    )
    assert first["labels"] == later["labels"]


def test_an_incident_stamped_in_the_future_never_starts_after_it_ends() -> None:
    settings = Settings(page_resolve_seconds=600)
    future = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # NOW + 2 h, past endsAt (NOW + 10 min)
    page = alertmanager_alert(_alert(timestamp=future, last_seen=future), settings, NOW)
    assert page["startsAt"] <= page["endsAt"]
    assert page["startsAt"] == NOW.isoformat()
    assert page["annotations"]["first_seen"] == future.isoformat()


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


Handler = Callable[[web.Request], Awaitable[web.Response]]


@asynccontextmanager
async def _paging(
    routes: Mapping[str, Handler], held_file: Path | None = None
) -> AsyncIterator[tuple[Pager, list[float]]]:
    """A pager talking to a real local HTTP server with these routes (Alertmanager's, and a
    webhook at ``/hook`` if given); its back-off records its pauses instead of sleeping."""
    port = free_ports(1)[0]
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        alertmanager_url=base, page_webhook_url=f"{base}/hook" if "/hook" in routes else None
    )
    try:
        async with aiohttp.ClientSession() as session:
            yield Pager(settings, session, Backoff(sleep=sleep), held_file), pauses
    finally:
        await runner.cleanup()


def test_pages_reach_alertmanager_and_the_webhook_and_survive_an_outage() -> None:
    """Against a real HTTP server: the first push fails (503), the pager waits and retries."""
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
        routes = {"/api/v2/alerts": alertmanager, "/hook": webhook}
        async with _paging(routes) as (pager, pauses):
            assert await pager.page([_alert()]) == 1
        return pauses

    pauses = asyncio.run(scenario())
    assert pauses == [0.5]  # one failure, one back-off
    assert [name for name, _ in received] == ["alertmanager", "webhook"]
    am_body, hook_body = received[0][1], received[1][1]
    assert isinstance(am_body, list) and am_body[0]["labels"]["alert_id"] == "a1"
    assert isinstance(hook_body, list) and hook_body[0]["rule_id"] == "support.no_consent"


def test_a_refused_page_is_not_retried_and_does_not_hold_the_others_back() -> None:
    """A permanent 400 for one incident: the others of its batch and of later batches are
    delivered, nothing waits on a retry, and the refused one is held and counted."""
    received: list[str] = []

    async def alertmanager(request: web.Request) -> web.Response:
        body = await request.json()
        if any(a["labels"]["alert_id"] == "bad" for a in body):
            return web.Response(status=400, text="bad alert")  # refuses the whole request
        received.extend(a["labels"]["alert_id"] for a in body)
        return web.Response(status=200)

    async def scenario() -> tuple[list[int], list[float], list[str]]:
        async with _paging({"/api/v2/alerts": alertmanager}) as (pager, pauses):
            first = await pager.page([_alert(alert_id="ok-1"), _alert(alert_id="bad")])
            second = await pager.page([_alert(alert_id="ok-2")])
            return [first, second], pauses, list(pager.held)

    delivered, pauses, held = asyncio.run(scenario())
    assert delivered == [1, 1]
    assert sorted(received) == ["ok-1", "ok-2"]
    assert pauses == []  # a permanent refusal is never retried
    assert held == ["bad"]


def test_a_refused_page_outlives_a_restart_and_goes_out_once_the_receiver_is_fixed(
    tmp_path: Path,
) -> None:
    """Its offset on the alerts topic is committed: only the held file remembers it."""
    fixed = {"yes": False}
    received: list[str] = []

    async def alertmanager(request: web.Request) -> web.Response:
        body = await request.json()
        if not fixed["yes"] and any(a["labels"]["alert_id"] == "bad" for a in body):
            return web.Response(status=400, text="bad alert")
        received.extend(a["labels"]["alert_id"] for a in body)
        return web.Response(status=200)

    held_file = tmp_path / "held-pages.jsonl"

    async def scenario() -> tuple[list[str], int]:
        async with _paging({"/api/v2/alerts": alertmanager}, held_file) as (pager, _):
            await pager.page([_alert(alert_id="bad")])
        held_file.with_name("junk").write_text("")  # a stray file nearby changes nothing
        with held_file.open("a") as out:
            out.write("not an alert\n")  # a damaged line is skipped, not fatal
        fixed["yes"] = True
        async with _paging({"/api/v2/alerts": alertmanager}, held_file) as (restarted, _):
            after_restart = list(restarted.held)
            delivered = await restarted.retry_held()  # SIGHUP
            return after_restart, delivered

    after_restart, delivered = asyncio.run(scenario())
    assert after_restart == ["bad"]
    assert delivered == 1 and received == ["bad"]
    assert held_file.read_text() == ""  # delivered: held no more


def test_a_pager_bug_holds_the_incidents_instead_of_stopping_the_agent(monkeypatch: Any) -> None:
    """Not the receiver's answer but our own error: raising would have Faust acknowledge the
    batch unpaged; the incidents are held for a SIGHUP instead."""
    import streams.paging as paging

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("a bug building the request")

    monkeypatch.setattr(paging, "alertmanager_alert", broken)
    pager = Pager(Settings(), None, Backoff())  # type: ignore[arg-type]
    assert asyncio.run(pager.page_safely([_alert(alert_id="x")])) == 0
    assert list(pager.held) == ["x"]

"""The console API on the real Elasticsearch (and Kafka, where searches are recorded): tokens
and roles (401/403), triage state changes, and triage surviving an incident's new evidence."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from detectors.alerts import Alert, Severity
from streams.audit.report import flags
from streams.backoff import Backoff
from streams.console import tokens, triage
from streams.console.api import create_api
from streams.detection.sink import AlertSink, alert_document
from streams.elastic import async_client, sync_client
from streams.history.templates import prepare
from streams.keys import Key
from streams.paging import Pager, alertmanager_alert
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from streams.topics import ensure_topics, read_topic
from tests.conftest import TEST_KEY, RunningStack
from tests.helpers import paged

pytestmark = pytest.mark.integration

ALERT = Alert(
    alert_id="api-test-alert",
    rule_id="support.no_consent",
    severity=Severity.HIGH,
    timestamp=datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
    last_seen=datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
    actor_id="sup-ma-042",
    practice_id="prac-1",
    event_ids=["e1"],
    event_count=1,
    summary="support agent sup-ma-042 viewed medical data ...",
    headline="support agent sup-ma-042 viewed medical data ...",
    group="session:prac-1/rs-1",
    window_start=datetime(2026, 11, 16, 9, 0, tzinfo=UTC),
)


async def _client(settings: Settings) -> TestClient:  # type: ignore[type-arg]
    app = create_api(settings, sync_client(settings), Pseudonymizer(Key("test", TEST_KEY.encode())))
    client = TestClient(TestServer(app))  # a real HTTP server on a free port
    await client.start_server()
    return client


@pytest.fixture
def prepared(isolated: Settings) -> Settings:
    ensure_topics(isolated)
    es = sync_client(isolated)
    prepare(es, isolated)
    es.index(
        index=isolated.alerts_index,
        id=ALERT.alert_id,
        document=alert_document(ALERT),
        version=1,
        version_type="external_gte",
        refresh="wait_for",
    )
    return isolated


def test_tokens_and_roles(prepared: Settings) -> None:
    es = sync_client(prepared)
    issued = {role: tokens.create(es, prepared, f"{role.value}-1", role) for role in tokens.Role}
    stored = json.dumps(es.search(index=prepared.tokens_index)["hits"]["hits"])
    assert not any(token in stored for token in issued.values())  # hashes only

    expected = {  # path -> roles allowed (admin always)
        "/api/search?actor=nobody": {"auditor", "admin"},
        "/api/reports/patient?patient=P-1": {"auditor", "admin"},
        "/api/reports/actor?actor=sup-ma-042&format=csv": {"auditor", "admin"},
        "/api/reports/practice?practice=prac-1&format=html": {"auditor", "admin"},
        "/api/alerts": {"analyst", "admin"},
    }

    async def scenario() -> list[tuple[str, str, int]]:
        client = await _client(prepared)
        seen = []
        try:
            for path in expected:
                seen.append(("none", path, (await client.get(path)).status))
                bad = await client.get(path, headers={"Authorization": "Bearer gt_wrong"})
                seen.append(("wrong", path, bad.status))
                for role, token in issued.items():
                    answer = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                    seen.append((role.value, path, answer.status))
            page = await client.get("/")
            seen.append(("none", "/", page.status))
        finally:
            await client.close()
        return seen

    for who, path, status in asyncio.run(scenario()):
        if path == "/":
            assert status == 200  # the console page itself is public; its data is not
        elif who in {"none", "wrong"}:
            assert status == 401, (who, path)
        else:
            assert status == (200 if who in expected[path] else 403), (who, path, status)


def test_triage_changes_are_stored_shown_and_kept(prepared: Settings) -> None:
    es = sync_client(prepared)
    analyst = tokens.create(es, prepared, "ana", tokens.Role.ANALYST)
    auth = {"Authorization": f"Bearer {analyst}"}
    path = f"/api/alerts/{ALERT.alert_id}/triage"

    async def scenario() -> dict[str, Any]:
        client = await _client(prepared)
        try:
            opened = await (await client.get("/api/alerts?status=open", headers=auth)).json()
            assert [a["alert_id"] for a in opened["alerts"]] == [ALERT.alert_id]
            ack = await client.post(path, headers=auth, json={"status": "acknowledged"})
            assert ack.status == 200
            nocomment = await client.post(path, headers=auth, json={"status": "true_positive"})
            assert nocomment.status == 400
            assert "needs a comment" in (await nocomment.json())["error"]
            bogus = await client.post(path, headers=auth, json={"status": "maybe"})
            assert bogus.status == 400
            garbled = await client.post(path, headers=auth, data=b"not json")
            assert garbled.status == 400
            missing = await client.post(
                "/api/alerts/nope/triage", headers=auth, json={"status": "acknowledged"}
            )
            assert missing.status == 400
            closed = await client.post(
                path, headers=auth, json={"status": "true_positive", "comment": "confirmed"}
            )
            assert closed.status == 200
            record: dict[str, Any] = await closed.json()
            listed = await (
                await client.get("/api/alerts?status=true_positive", headers=auth)
            ).json()
            assert [a["alert_id"] for a in listed["alerts"]] == [ALERT.alert_id]
            still_open = await (await client.get("/api/alerts?status=open", headers=auth)).json()
            assert still_open["count"] == 0
            return record
        finally:
            await client.close()

    record = asyncio.run(scenario())
    assert [step["status"] for step in record["history"]] == ["acknowledged", "true_positive"]
    assert record["by"] == "ana" and record["comment"] == "confirmed"
    shown = es.get(index=prepared.alerts_index, id=ALERT.alert_id)["_source"]
    assert shown["triage"]["status"] == "true_positive"  # in the alerts index, for Kibana

    # New evidence rewrites the incident: its triage stays.
    grown = ALERT.model_copy(update={"event_ids": ["e1", "e2"], "event_count": 2})

    async def rewrite() -> None:
        client = async_client(prepared)
        try:
            await AlertSink(client, prepared, Backoff()).write([grown])
        finally:
            await client.close()

    asyncio.run(rewrite())
    es.indices.refresh(index=prepared.alerts_index)
    after = es.get(index=prepared.alerts_index, id=ALERT.alert_id)["_source"]
    assert after["event_count"] == 2 and after["triage"]["status"] == "true_positive"


def test_a_patient_search_under_a_key_the_history_was_not_made_with_is_refused(
    prepared: Settings,
) -> None:
    """409 naming the history's keys, not an empty answer that reads "nobody accessed this
    patient" (issue 12)."""
    es = sync_client(prepared)
    es.index(
        index=prepared.history_month_index(2026, 11),
        id="made-under-k7",
        document={
            "@timestamp": "2026-11-16T09:00:00+00:00",
            "event": {"id": "made-under-k7", "action": "view", "provider": "practice_app"},
            "user": {"id": "dr-a", "roles": ["practitioner"]},
            "health": {
                "patient": {"pseudonym": "k7:00ff", "key": {"id": "k7", "fingerprint": "f7"}}
            },
        },
        refresh="wait_for",
    )
    token = tokens.create(es, prepared, "auditor-1", tokens.Role.AUDITOR)

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        client = await _client(prepared)
        answers = []
        try:
            for path in ("/api/search?patient=P-1", "/api/reports/patient?patient=P-1"):
                answer = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                answers.append((answer.status, await answer.json()))
        finally:
            await client.close()
        return answers

    for status, body in asyncio.run(scenario()):
        assert status == 409, body
        assert "k7 (fingerprint f7)" in body["error"] and "rows" not in body


def test_every_look_is_recorded_under_the_token_and_refusals_are_logged_and_counted(
    prepared: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12: the token's user and role are recorded before data goes out; a look that
    cannot be recorded returns an error, not data; expired and revoked tokens are refused; every
    refusal is a log line and a count."""
    es = sync_client(prepared)
    auditor = tokens.create(es, prepared, "claire", tokens.Role.AUDITOR)
    analyst = tokens.create(es, prepared, "alex", tokens.Role.ANALYST)
    past = datetime.now(UTC) - timedelta(days=40)
    expired = tokens.create(es, prepared, "old", tokens.Role.AUDITOR, days=30, now=past)
    revoked = tokens.create(es, prepared, "gone", tokens.Role.AUDITOR)
    tokens.revoke(es, prepared, tokens.digest(revoked)[:12])
    statuses = {row["name"]: row["status"] for row in tokens.listing(es, prepared)}
    assert statuses == {"claire": "valid", "alex": "valid", "old": "expired", "gone": "revoked"}
    denied_before = _denied()

    async def scenario() -> dict[str, tuple[int, dict[str, Any]]]:
        client = await _client(prepared)
        calls = {
            "search": (auditor, "/api/search?actor=sup-ma-042"),
            "unrecordable": (auditor, "/api/search?practice=" + "p" * 200),
            "expired": (expired, "/api/search?actor=x"),
            "revoked": (revoked, "/api/search?actor=x"),
            "forbidden": (analyst, "/api/search?actor=x"),
        }
        answers = {}
        try:
            for name, (token, path) in calls.items():
                answer = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                answers[name] = (answer.status, await answer.json())
        finally:
            await client.close()
        return answers

    with caplog.at_level(logging.WARNING, logger="streams.console.api"):
        answers = asyncio.run(scenario())
    assert answers["search"][0] == 200
    status, body = answers["unrecordable"]
    assert status == 400 and "rows" not in body and "practice_id" in body["error"]
    assert [answers[n][0] for n in ("expired", "revoked", "forbidden")] == [401, 401, 403]
    refusals = [r for r in caplog.records if r.getMessage() == "console request denied"]
    assert sorted((r.__dict__["reason"], r.__dict__["user.name"]) for r in refusals) == [
        ("expired", "old"),
        ("revoked", "gone"),
        ("role analyst", "alex"),
    ]
    assert _denied() - denied_before == 3

    recorded = _recorded_looks(prepared, expected=1)
    assert recorded[0]["user"]["id"] == "claire"
    look = recorded[0]["health"]["attributes"]["guetteur_audit"]
    assert look["role"] == "auditor" and look["proven_by"] == "token"
    assert look["index"] == prepared.history_index


def _denied() -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "guetteur_console_denied"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def _recorded_looks(settings: Settings, expected: int) -> list[dict[str, Any]]:
    """The console's audit records, read back from the events topic (no worker runs here)."""
    looks = []
    for record in read_topic(settings, settings.topic_events, "console-test"):
        event = json.loads(record.value or b"{}")
        if event.get("source") == "guetteur":
            looks.append(
                {
                    "user": {"id": event["actor"]["id"]},
                    "health": {"attributes": event["attributes"]},
                }
            )
    assert len(looks) == expected, looks
    return looks


def test_a_false_positive_resolves_its_page_at_once_and_new_evidence_does_not_ring_again(
    prepared: Settings, stack: RunningStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: triage closes the loop, in Alertmanager and in the reports."""
    monkeypatch.setenv("GUETTEUR_PAGE_SEVERITIES", "high,critical")
    settings = Settings()
    alertmanager = stack.settings.alertmanager_url
    now = datetime.now(UTC)
    _post(f"{alertmanager}/api/v2/alerts", [alertmanager_alert(ALERT, settings, now)])
    assert [a["labels"]["alert_id"] for a in paged(alertmanager, settings.app_id)] == [
        ALERT.alert_id
    ]
    es = sync_client(settings)
    analyst = tokens.create(es, settings, "ana", tokens.Role.ANALYST)
    auth = {"Authorization": f"Bearer {analyst}"}

    async def scenario() -> dict[str, Any]:
        client = await _client(settings)
        try:
            bogus = await client.get("/api/alerts?status=bogus", headers=auth)
            assert bogus.status == 400 and "one of" in (await bogus.json())["error"]
            listed = await client.post(
                f"/api/alerts/{ALERT.alert_id}/triage", headers=auth, json=[1]
            )
            assert listed.status == 400  # a body that is not a JSON object
            answer = await client.post(
                f"/api/alerts/{ALERT.alert_id}/triage",
                headers=auth,
                json={"status": "false_positive", "comment": "covers Mondays"},
            )
            assert answer.status == 200
            record: dict[str, Any] = await answer.json()
            return record
        finally:
            await client.close()

    record = asyncio.run(scenario())
    assert record["page"] == "resolved"
    assert paged(alertmanager, settings.app_id) == []

    # The worker's pager, given new evidence for the incident, keeps its page resolved.
    grown = ALERT.model_copy(update={"event_ids": ["e1", "e2"], "event_count": 2})

    async def page_again() -> None:
        client = async_client(settings)
        try:
            async with aiohttp.ClientSession() as session:
                triaged = partial(triage.ending_pages, client, settings)
                pager = Pager(settings, session, Backoff(), None, triaged)
                assert await pager.page([grown]) == 1
        finally:
            await client.close()

    asyncio.run(page_again())
    assert paged(alertmanager, settings.app_id) == []

    # Reports show the decision next to the flagged access.
    assert flags(es, settings, ["e1"]) == {
        "e1": "support.no_consent (false positive by ana: covers Mondays)"
    }


def _post(url: str, body: Any) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def test_searches_and_alerts_page_past_any_limit_and_filter(prepared: Settings) -> None:
    """Issue 13: /api/search and /api/alerts used to stop at 10,000 rows without saying so."""
    es = sync_client(prepared)
    for n in range(25):
        es.index(
            index=prepared.history_month_index(2026, 11),
            id=f"pg-{n:02d}",
            document={
                "@timestamp": f"2026-11-16T09:{n:02d}:00+00:00",
                "event": {"id": f"pg-{n:02d}", "action": "view", "provider": "practice_app"},
                "user": {"id": "dr-a", "roles": ["practitioner"]},
                "health": {"practice": {"id": "prac-paged"}},
            },
        )
    es.indices.refresh(index=prepared.history_month_index(2026, 11))
    for n, (rule, actor) in enumerate(
        [("support.no_consent", "sup-1"), ("hri.bulk_download", "dr-b")]
    ):
        other = ALERT.model_copy(
            update={
                "alert_id": f"page-alert-{n}",
                "rule_id": rule,
                "actor_id": actor,
                "timestamp": datetime(2026, 11, 17, 9, n, tzinfo=UTC),
            }
        )
        es.index(index=prepared.alerts_index, id=other.alert_id, document=alert_document(other))
    es.indices.refresh(index=prepared.alerts_index)
    auditor = tokens.create(es, prepared, "claire", tokens.Role.AUDITOR)
    analyst = tokens.create(es, prepared, "ana", tokens.Role.ANALYST)

    async def scenario() -> tuple[list[list[str]], dict[str, Any]]:
        client = await _client(prepared)
        try:
            pages: list[list[str]] = []
            after = ""
            while True:
                path = f"/api/search?practice=prac-paged&size=10&after={after}"
                answer = await client.get(path, headers={"Authorization": f"Bearer {auditor}"})
                body = await answer.json()
                assert answer.status == 200, body
                pages.append([row["event_id"] for row in body["rows"]])
                if body["next"] is None:
                    break
                after = body["next"]
            auth = {"Authorization": f"Bearer {analyst}"}
            await client.post(
                "/api/alerts/page-alert-1/triage", headers=auth, json={"status": "acknowledged"}
            )
            seen = {}
            for name, query in {
                "open": "status=open",
                "acknowledged": "status=acknowledged",
                "all_by_rule": "status=all&rule=hri.bulk_download",
                "all_by_actor": "status=all&actor=sup-1",
                "all_paged": "status=all&size=1",
                "bad_size": "size=0",
                "bad_cursor": "after=%21%21",
                "bad_date": "from=yesterday",
            }.items():
                answer = await client.get(f"/api/alerts?{query}", headers=auth)
                seen[name] = (answer.status, await answer.json())
            return pages, seen
        finally:
            await client.close()

    pages, seen = asyncio.run(scenario())
    assert [len(page) for page in pages] == [10, 10, 5]
    assert sorted(e for page in pages for e in page) == [f"pg-{n:02d}" for n in range(25)]
    ids = {
        name: [a["alert_id"] for a in body.get("alerts", [])] for name, (_, body) in seen.items()
    }
    assert "page-alert-1" not in ids["open"] and "page-alert-0" in ids["open"]
    assert ids["acknowledged"] == ["page-alert-1"]
    assert seen["acknowledged"][1]["alerts"][0]["triage_history"][0]["by"] == "ana"
    assert ids["all_by_rule"] == ["page-alert-1"] and ids["all_by_actor"] == ["page-alert-0"]
    assert len(ids["all_paged"]) == 1 and seen["all_paged"][1]["next"] is not None
    assert [seen[n][0] for n in ("bad_size", "bad_cursor", "bad_date")] == [400, 400, 400]

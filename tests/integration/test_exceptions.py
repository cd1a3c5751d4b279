"""A false positive turned into an exception, on the real stack (issue 13): its page resolves,
a replay of the same days and ``guetteur detect`` no longer raise it, every other incident still
fires, and the accesses stay in the history and reports."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from streams.cli.main import cli
from streams.console import tokens
from streams.console.api import create_api
from streams.demo.simulate import simulate
from streams.elastic import sync_client
from streams.keys import Key
from streams.producer import publish
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.conftest import TEST_KEY, RunningStack
from tests.helpers import paged_ids, stored_alerts, wait_until
from tests.integration.test_detection_stream import ENV, offline, wait_for_alerts

pytestmark = pytest.mark.integration


def test_a_false_positive_with_an_exception_closes_the_loop(
    isolated: Settings, stack: RunningStack, tmp_path: Path
) -> None:
    days = simulate(practices=2, days=2, seed=23)
    expected = offline(days.events)
    target = _a_role_incident(expected)
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in days.events])
    alertmanager = stack.settings.alertmanager_url
    env = {**ENV, "GUETTEUR_PAGE_SEVERITIES": "low,medium,high,critical"}
    log = tmp_path / "worker.log"
    with WorkerProcess(log, env=env) as worker:
        wait_for_alerts(isolated, expected, worker, log)
        wait_until(lambda: target["alert_id"] in paged_ids(alertmanager, isolated.app_id))

        # The analyst: a false positive, and an exception for this actor at this practice.
        console = isolated.model_copy(update={"page_severities": env["GUETTEUR_PAGE_SEVERITIES"]})
        record = asyncio.run(_false_positive(console, target))
        assert record["page"] == "resolved"
        assert target["alert_id"] not in paged_ids(alertmanager, isolated.app_id)
        exception = record["exception"]
        assert exception["from_alert"] == target["alert_id"] and exception["approved_by"] == "ana"
        time.sleep(2)  # every worker follows the exceptions topic (polled each second)

        # A replay of the same days (new event ids): everything else fires again, not it.
        replay = [{**e, "event_id": f"{e['event_id']}-replay"} for e in days.events]
        publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in replay])
        others = [i for i, a in expected.items() if not _covered(a, target)]
        assert others
        client = sync_client(isolated)
        wait_until(
            lambda: all(_replayed(stored_alerts(client, isolated).get(i)) for i in others), 180
        )
        after = stored_alerts(client, isolated)
        assert after[target["alert_id"]]["event_ids"] == target["event_ids"]
        assert not any(_covered(a, target) and _replayed(a) for a in after.values())
        assert worker.alive(), log.read_text()[-2000:]

    # The backtest agrees with the worker.
    events = tmp_path / "days.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in days.events))
    result = CliRunner().invoke(cli, ["detect", str(events), "--exceptions", "kafka"])
    assert result.exit_code == 0, result.output
    backtest = {json.loads(line)["alert_id"] for line in result.stdout.splitlines() if line}
    assert target["alert_id"] not in backtest and set(others) <= backtest

    # The accesses are still in the history and the reports, with the decision next to them.
    report = CliRunner().invoke(cli, ["report", "actor", target["actor_id"], "--format", "json"])
    assert report.exit_code == 0, report.output
    rows = {r["event_id"]: r for r in map(json.loads, report.stdout.splitlines())}
    assert set(target["event_ids"]) <= set(rows)
    assert "false positive by ana: works there on Mondays" in rows[target["event_ids"][0]]["alerts"]
    # Expiring and deleting are recorded too; an expired one stays listed with --all.
    exception_id = exception["exception_id"]
    for args in (["expire", exception_id], ["delete", exception_id]):
        done = CliRunner().invoke(cli, ["exceptions", *args, "--reason", "no longer at Monday"])
        assert done.exit_code == 0, done.output
        if args[0] == "expire":
            assert _listed() == [] and _listed("--all") == [exception_id]
    assert _listed("--all") == []
    changes = CliRunner().invoke(cli, ["exceptions", "history", "--json"])
    history = [json.loads(line) for line in changes.stdout.splitlines()]
    assert [c["change"] for c in history] == ["created", "expired", "deleted"]
    assert {c["by"] for c in history[1:]} == {getpass.getuser()}


def _listed(*flags: str) -> list[str]:
    listed = CliRunner().invoke(cli, ["exceptions", "list", "--json", *flags])
    assert listed.exit_code == 0, listed.output
    return [json.loads(line)["exception_id"] for line in listed.stdout.splitlines()]


def _a_role_incident(expected: dict[str, dict[str, Any]]) -> dict[str, Any]:
    roles = [a for a in expected.values() if a["rule_id"] == "access.role_not_permitted"]
    assert roles, sorted({a["rule_id"] for a in expected.values()})
    return min(roles, key=lambda a: a["timestamp"])


def _covered(alert: dict[str, Any], target: dict[str, Any]) -> bool:
    same = ("rule_id", "actor_id", "practice_id")
    return all(alert.get(name) == target[name] for name in same)


def _replayed(alert: dict[str, Any] | None) -> bool:
    return alert is not None and any(e.endswith("-replay") for e in alert["event_ids"])


async def _false_positive(settings: Settings, target: dict[str, Any]) -> dict[str, Any]:
    es = sync_client(settings)
    token = tokens.create(es, settings, "ana", tokens.Role.ANALYST)
    pseudonymizer = Pseudonymizer(Key("test", TEST_KEY.encode()))
    client = TestClient(TestServer(create_api(settings, es, pseudonymizer)))
    await client.start_server()
    try:
        answer = await client.post(
            f"/api/alerts/{target['alert_id']}/triage",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "status": "false_positive",
                "comment": "works there on Mondays",
                "exception": {
                    "scope": ["actor_id", "practice_id"],
                    "starts": "2026-01-01T00:00:00+00:00",  # the replayed past days too
                    "expires": "2027-01-01T00:00:00+00:00",
                },
            },
        )
        assert answer.status == 200, await answer.text()
        record: dict[str, Any] = await answer.json()
        return record
    finally:
        await client.close()

"""On-call, on the real local stack: incidents page Alertmanager (one alert per incident, right
labels, resolved when evidence stops) and a real Prometheus scraping the worker counts them."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.demo.simulate import simulate
from streams.elastic import sync_client
from streams.producer import publish
from streams.settings import Settings
from streams.stack.prometheus import add_scrape_target
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.conftest import RunningStack
from tests.helpers import paged as current_pages
from tests.helpers import stored_history
from tests.integration.test_detection_stream import ENV, offline, wait_for_alerts

pytestmark = pytest.mark.integration

RESOLVE_SECONDS = 15


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _promql(prometheus: str, query: str) -> dict[str, float]:
    answer = _get(f"{prometheus}/api/v1/query?query={urllib.parse.quote(query)}")
    return {r["metric"].get("rule_id", ""): float(r["value"][1]) for r in answer["data"]["result"]}


def test_incidents_page_alertmanager_and_prometheus_counts_them(
    isolated: Settings, stack: RunningStack, tmp_path: Path
) -> None:
    day = simulate(practices=2, days=2, seed=23)
    expected = offline(day.events)
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in day.events])
    stack_settings = stack.settings
    target = add_scrape_target(
        stack.stack.prometheus.targets_dir,
        isolated.app_id,
        f"127.0.0.1:{isolated.web_port}",
        guetteur_test=isolated.app_id,
    )
    env = {
        **ENV,
        "GUETTEUR_PAGE_SEVERITIES": "low,medium,high,critical",
        "GUETTEUR_PAGE_RESOLVE_SECONDS": str(RESOLVE_SECONDS),
    }
    log = tmp_path / "worker.log"
    try:
        with WorkerProcess(log, env=env) as worker:
            found = wait_for_alerts(isolated, expected, worker, log)
            assert set(found) == set(expected)

            paged = _wait(
                lambda: current_pages(stack_settings.alertmanager_url, isolated.app_id),
                lambda got: len(got) >= len(expected),
            )
            assert sorted(a["labels"]["alert_id"] for a in paged) == sorted(expected)  # one each
            for alert in paged:
                incident = expected[alert["labels"]["alert_id"]]
                assert alert["status"]["state"] == "active"
                assert alert["labels"]["rule_id"] == incident["rule_id"]
                assert alert["labels"]["severity"] == incident["severity"]
                assert alert["annotations"]["actor_id"] == incident["actor_id"]
                assert alert["annotations"].get("practice_id") == incident["practice_id"]
                assert alert["annotations"]["summary"] == incident["summary"]
                assert alert["labels"]["alert_id"] in alert["annotations"]["kibana"]

            per_rule = Counter(a["rule_id"] for a in expected.values())
            query = f'sum by (rule_id) (guetteur_alerts_total{{guetteur_test="{isolated.app_id}"}})'
            counted = _wait(
                lambda: _promql(stack_settings.prometheus_url, query),
                lambda got: got == {r: float(n) for r, n in per_rule.items()},
            )
            assert counted == {r: float(n) for r, n in per_rule.items()}

            # No new evidence: each page resolves (leaves Alertmanager's active list).
            gone = _wait(
                lambda: current_pages(stack_settings.alertmanager_url, isolated.app_id),
                lambda got: not got,
                timeout=RESOLVE_SECONDS + 45,
            )
            assert gone == []
    finally:
        target.unlink(missing_ok=True)


def _wait(fetch: Any, done: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(1)
        value = fetch()
    return value


def _support_export(event_id: str, agent: str, at: datetime) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "timestamp": at.isoformat(),
            "source": "remote_support",
            "action": "export",
            "actor": {"id": agent, "role": "support_agent", "country": "FR"},
            "practice_id": "prac-future",
            "patient_id": "P-1",
            "data_category": "medical",
            "session_id": f"rs-{agent}",
        }
    ).encode()


def test_a_page_from_the_future_jams_nothing_and_sigterm_is_quick(
    isolated: Settings, stack: RunningStack, tmp_path: Path
) -> None:
    """An incident stamped 2 h ahead (past the page's endsAt) once got a permanent 400, was
    retried forever, held every later page back and made SIGTERM hang past 75 s."""
    now = datetime.now(UTC)
    ensure_topics(isolated)
    publish(
        isolated,
        isolated.topic_events,
        [
            _support_export("future-1", "sup-future", now + timedelta(hours=2)),
            _support_export("present-1", "sup-present", now),
        ],
    )
    env = {
        **ENV,
        "GUETTEUR_PAGE_SEVERITIES": "high,critical",
        "GUETTEUR_EVENT_MAX_FUTURE_SECONDS": str(3 * 3600),
        "GUETTEUR_CHECKPOINT_SECONDS": "3600",  # so the last checkpoint is the stop's own
    }
    alertmanager = stack.settings.alertmanager_url
    log = tmp_path / "worker.log"
    worker = WorkerProcess(log, env=env).start()
    try:
        paged = _wait(
            lambda: current_pages(alertmanager, isolated.app_id),
            lambda got: len({a["annotations"]["actor_id"] for a in got}) >= 2,
        )
        assert {a["annotations"]["actor_id"] for a in paged} == {"sup-future", "sup-present"}
        assert worker.alive(), log.read_text()[-3000:]
        # One more event moves the chain head past the last signed checkpoint.
        publish(isolated, isolated.topic_events, [_support_export("last-1", "sup-last", now)])
        client = sync_client(isolated)
        _wait(lambda: stored_history(client, isolated, ["last-1"]), bool)
        started = time.monotonic()
        code = worker.stop(timeout=30)
        took = time.monotonic() - started
    finally:
        worker.kill()
    assert took < 10, f"SIGTERM took {took:.1f}s\n{log.read_text()[-3000:]}"
    assert code == 0, log.read_text()[-3000:]
    client.indices.refresh(index=isolated.checkpoint_index)
    assert client.count(index=isolated.checkpoint_index)["count"] == 2  # the first, and the stop's

"""The detectors' clock moves in silence: a support agent's view with no consent, followed by
nothing at all, alerts once its deadline has passed (before issue 11 it never did: the clock
moved only when an event arrived)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.elastic import sync_client
from streams.producer import publish
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.helpers import MINIMAL_EVENT, stored_alerts, stored_history

pytestmark = pytest.mark.integration

SKEW, LATENESS = 2, 5  # the no-consent deadline: SKEW + LATENESS after the access
POLICY = f"""
[alerts]
lateness_seconds = {LATENESS}
[support]
clock_skew_seconds = {SKEW}
"""


def _support(event_id: str, action: str, at: datetime, **fields: object) -> bytes:
    event = {
        "event_id": event_id,
        "timestamp": at.isoformat(),
        "source": "remote_support",
        "action": action,
        "actor": {"id": "sup-quiet", "role": "support_agent", "country": "FR"},
        "practice_id": "prac-quiet",
        "session_id": "rs-quiet",
        **fields,
    }
    return json.dumps(event).encode()


def test_a_view_without_consent_then_silence_alerts_after_its_deadline(
    isolated: Settings, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = {
        "GUETTEUR_POLICY_FILE": str(policy),
        "GUETTEUR_BATCH_SECONDS": "0.2",
        "GUETTEUR_IDLE_SECONDS": "1",
        "GUETTEUR_TICK_SECONDS": "0.5",
    }
    ensure_topics(isolated)
    client = sync_client(isolated)
    log = tmp_path / "worker.log"
    with WorkerProcess(log, env=env) as worker:
        # The worker is up when it has indexed something: time the silence from then on.
        publish(isolated, isolated.topic_events, [json.dumps(MINIMAL_EVENT).encode()])
        deadline = time.monotonic() + 90
        while not stored_history(client, isolated, [MINIMAL_EVENT["event_id"]]):
            assert worker.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)

        now = datetime.now(UTC)
        publish(
            isolated,
            isolated.topic_events,
            [
                _support("quiet-start", "session_start", now),
                _support("quiet-view", "view", now, patient_id="P-9", data_category="medical"),
            ],
        )
        sent = time.monotonic()
        found: dict[str, dict[str, Any]] = {}
        while not found and time.monotonic() - sent < SKEW + LATENESS + 30:
            assert worker.alive(), log.read_text()[-3000:]
            found = stored_alerts(client, isolated)
            time.sleep(0.2)
        took = time.monotonic() - sent
    assert [a["rule_id"] for a in found.values()] == ["support.no_consent"]
    # No earlier than the deadline (a consent stamped up to SKEW later could still come)...
    assert took >= SKEW + LATENESS - 0.5, f"alerted after {took:.1f}s"
    # ...and no later than 2 s after it, with nothing else arriving.
    assert took <= SKEW + LATENESS + 2, f"alerted after {took:.1f}s\n{log.read_text()[-2000:]}"


def test_the_groups_committed_offsets_come_from_the_broker(isolated: Settings) -> None:
    """What the clock asks for a partition it has handled nothing of (detection.backlog)."""
    import asyncio

    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from streams.topics import GroupOffsets

    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [json.dumps(MINIMAL_EVENT).encode()] * 3)
    group = f"{isolated.app_id}-probe"
    offsets = GroupOffsets(isolated, group)
    try:
        assert asyncio.run(offsets.committed(isolated.topic_events, [0])) == {}  # none yet
        consumer = KafkaConsumer(bootstrap_servers=isolated.kafka_servers(), group_id=group)
        tp = TopicPartition(isolated.topic_events, 0)
        consumer.commit({tp: OffsetAndMetadata(2, "", -1)})
        consumer.close()
        assert asyncio.run(offsets.committed(isolated.topic_events, [0, 1])) == {0: 2}
    finally:
        offsets.close()

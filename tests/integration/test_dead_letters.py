"""Bad messages of every kind reach the dead-letter topic with their reason; nothing is lost."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams import dead_letters
from streams.cli.main import cli
from streams.elastic import sync_client
from streams.producer import publish
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.helpers import MINIMAL_EVENT, stored_history

pytestmark = pytest.mark.integration

GOOD = {**MINIMAL_EVENT, "event_id": "dl-good-1"}
BAD = {
    b"\xff\xfe broken": "not_utf8",
    b"{not json": "not_json",
    b'["a", "list"]': "not_an_object",
    b"x" * 70_000: "oversized",
    json.dumps(
        {**GOOD, "event_id": "dl-bad-1", "timestamp": "2026-11-16T10:00:00"}
    ).encode(): "contract_violation",
    json.dumps({**GOOD, "event_id": "dl-bad-2", "action": "peek"}).encode(): "contract_violation",
}


def _wait_for_letters(
    settings: Settings, count: int, worker: WorkerProcess, log: Path
) -> list[dead_letters.DeadLetter]:
    deadline = time.monotonic() + 90
    letters: list[dead_letters.DeadLetter] = []
    while time.monotonic() < deadline:
        assert worker.alive(), log.read_text()[-3000:]
        letters = list(dead_letters.read_all(settings))
        if len(letters) >= count:
            return letters
        time.sleep(1)
    return letters


def _retention_ms(settings: Settings, topic: str) -> str:
    """The topic's retention.ms as the broker reports it."""
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    return str(described["topic"][topic]["retention.ms"]["value"])


def _wait_until_indexed(settings: Settings, event_id: str, worker: WorkerProcess) -> bool:
    """Dead letters may land before the valid event's batch does: wait for it, don't race it."""
    client = sync_client(settings)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.alive():
        if stored_history(client, settings, [event_id]):
            return True
        time.sleep(0.5)
    return False


def test_bad_messages_are_dead_lettered_with_reasons_and_replayable(
    isolated: Settings, tmp_path: Path
) -> None:
    ensure_topics(isolated)
    assert _retention_ms(isolated, isolated.topic_dlq) == str(30 * 24 * 3600 * 1000)
    publish(isolated, isolated.topic_events, [*BAD, json.dumps(GOOD).encode()])
    log = tmp_path / "worker.log"
    with WorkerProcess(log) as worker:
        letters = _wait_for_letters(isolated, len(BAD), worker, log)
        assert sorted(letter.reason for letter in letters) == sorted(BAD.values())
        assert {letter.value for letter in letters} == set(BAD)  # original bytes, verbatim
        assert all(letter.headers["source_topic"] == isolated.topic_events for letter in letters)
        contract = [letter for letter in letters if letter.reason == "contract_violation"]
        assert any(
            "timestamp: Input should have timezone info" in letter.headers["detail"]
            for letter in contract
        )

        # The worker kept going: the valid event after the bad ones is in the history.
        assert _wait_until_indexed(isolated, "dl-good-1", worker), log.read_text()[-3000:]

        listed = CliRunner().invoke(cli, ["dlq", "list", "--json"])
        assert listed.exit_code == 0, listed.output
        rows = [json.loads(line) for line in listed.output.splitlines()]
        assert len(rows) == len(BAD)
        assert "P-" not in listed.output and "x" * 100 not in listed.output  # no payloads

        replayed = CliRunner().invoke(cli, ["dlq", "replay", "--reason", "not_json", "--json"])
        assert replayed.exit_code == 0, replayed.output
        assert json.loads(replayed.output.splitlines()[-1])["replayed"] == 1
        again = _wait_for_letters(isolated, len(BAD) + 1, worker, log)
        replays = [letter for letter in again if letter.headers.get("replayed_from")]
        assert [letter.reason for letter in replays] == ["not_json"]
        assert worker.alive()

        with urllib.request.urlopen(f"http://127.0.0.1:{isolated.web_port}/metrics") as response:
            exposed = response.read().decode()
        assert 'guetteur_events_rejected_total{reason="not_json"} 2.0' in exposed
        assert 'guetteur_events_rejected_total{reason="contract_violation"} 2.0' in exposed
        assert 'guetteur_events_accepted_total{source="practice_app"} 1.0' in exposed

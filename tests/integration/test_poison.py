"""Poison mixed into a simulated day: every valid event indexed exactly once, every bad message
dead-lettered with its reason, the worker alive, and the incidents after the poison alerted.

Before issue 11 each poison class below made the ingest agent raise with its batch in flight;
Faust then committed the batch, so a day with eight of them mixed in ended with nothing indexed
and nothing dead-lettered.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams import dead_letters
from streams.cli.main import cli
from streams.demo.simulate import simulate
from streams.elastic import sync_client
from streams.producer import publish
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.helpers import MINIMAL_EVENT, stored_history
from tests.integration.test_detection_stream import ENV, comparable, offline, wait_for_alerts

pytestmark = pytest.mark.integration

# Just under the broker's 1 MiB limit: it gets in, but cannot go to the DLQ whole with headers.
NEAR_LIMIT = 1_040_000


def _event(**changes: Any) -> bytes:
    return json.dumps({**MINIMAL_EVENT, **changes}).encode()


def _raw_field(event_id: str, name: str, raw_json: bytes) -> bytes:
    return _event(event_id=event_id)[:-1] + b', "' + name.encode() + b'": ' + raw_json + b"}"


POISON: list[tuple[bytes, str]] = [
    (b'{"a":' * 1000 + b"1" + b"}" * 1000, "not_json"),
    (_raw_field("p-digits", "record_count", b"9" * 5000), "not_json"),
    (_event(event_id="p-year1", timestamp="0001-01-01T00:00:00+14:00"), "contract_violation"),
    (_event(event_id="p-year9999", timestamp="9999-12-31T23:59:59-14:00"), "contract_violation"),
    (b'{"event_id": "p-big", "pad": "' + b"x" * NEAR_LIMIT + b'"}', "oversized"),
    (_event(event_id="p-types", actor=["dr-martin"], record_count="3"), "contract_violation"),
    (_raw_field("p-nan", "record_count", b"NaN"), "contract_violation"),
    (_event(event_id="p-huge", record_count=2**64), "history_refused"),
]


def _mixed(valid: list[bytes]) -> list[bytes]:
    """The poison spread over the day, the first one early, the last one near the end."""
    out = list(valid)
    step = len(valid) // (len(POISON) + 1)
    for n, (raw, _) in enumerate(POISON):
        out.insert((n + 1) * step + n, raw)
    return out


def _wait_for(what: str, done: Any, worker: WorkerProcess, log: Path, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.alive(), log.read_text()[-3000:]
        value = done()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what}: not after {timeout:.0f}s\n{log.read_text()[-3000:]}")


def test_poison_mixed_into_a_day_loses_nothing(isolated: Settings, tmp_path: Path) -> None:
    # Two days: the second moves the event-time clock past the first day's pending decisions.
    day = simulate(practices=3, days=2, seed=5)
    valid = [json.dumps(e).encode() for e in day.events]
    expected = offline(day.events)
    assert expected, "the simulated day must raise incidents to prove detection goes on"
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, _mixed(valid))
    log = tmp_path / "worker.log"
    client = sync_client(isolated)
    env = {**ENV, "GUETTEUR_BATCH_SIZE": "100"}
    with WorkerProcess(log, env=env) as worker:
        _wait_for("all poison dead-lettered", lambda: _count(isolated) >= len(POISON), worker, log)
        letters = list(dead_letters.read_all(isolated))
        history = _wait_for(
            "every valid event indexed",
            lambda: h if len(h := stored_history(client, isolated)) >= len(valid) else None,
            worker,
            log,
        )
        found = wait_for_alerts(isolated, expected, worker, log)
        assert worker.alive()

    assert sorted(letter.reason for letter in letters) == sorted(r for _, r in POISON)
    assert sorted(history) == sorted(e["event_id"] for e in day.events)  # each exactly once
    assert comparable(found) == comparable(expected)

    big = next(letter for letter in letters if letter.source_reference is not None)
    reference = big.source_reference
    assert reference is not None and reference["bytes"] > NEAR_LIMIT
    assert len(big.value) < 2048  # a reference, not the message
    # The reference can still be replayed: the source topic holds the original.
    assert dead_letters.original(isolated, big) == POISON[4][0]


def _count(settings: Settings) -> int:
    return dead_letters.count(settings)


def test_a_reference_letter_is_replayed_from_the_source(isolated: Settings, tmp_path: Path) -> None:
    huge = POISON[4][0]
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [huge, _event(event_id="after-huge")])
    log = tmp_path / "worker.log"
    with WorkerProcess(log) as worker:
        _wait_for("the reference letter", lambda: _count(isolated) >= 1, worker, log)
        replayed = CliRunner().invoke(cli, ["dlq", "replay", "--reason", "oversized", "--json"])
        assert replayed.exit_code == 0, replayed.output
        assert json.loads(replayed.output.splitlines()[-1])["replayed"] == 1
        again = _wait_for(
            "the replayed message refused again",
            lambda: [x for x in dead_letters.read_all(isolated) if x.headers.get("replayed_from")],
            worker,
            log,
        )
    assert again[0].source_reference is not None  # refused again, as a reference again
    assert dead_letters.original(isolated, again[0]) == huge
    assert stored_history(sync_client(isolated), isolated, ["after-huge"])

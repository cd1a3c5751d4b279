"""Several workers sharing 8 partitions, one paused (its partitions lag), one SIGKILLed
mid-stream: the alerts index ends equal to the offline runner's, each incident once, and the
history holds every event.

Before issue 11: 4 of 18 alerts lost for good with two workers and a kill, and each worker's
clock followed the fastest partition it knew of. While issue 11 was worked on, this scenario
(then run by hand) found five more causes of lost or false incidents (docs/streaming.md); it
passed 16 runs in a row before joining the suite. On failure it says, for each missing piece of
evidence, which topics carried it, so the stage that dropped it shows, and what each worker
logged (warnings, rebalance steps, last detect batches): a worker that stalled for good once in
about 20 runs (docs/streaming.md, cause 6) was first seen only on the CI machine.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from streams.demo.simulate import simulate
from streams.elastic import sync_client
from streams.producer import publish
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.helpers import free_ports, stored_alerts, stored_history
from tests.integration.test_detection_stream import ENV, comparable, offline

pytestmark = pytest.mark.integration

PARTITIONS = 8


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_killed_or_lagging_raise_the_offline_incidents_once(
    isolated: Settings, workers: int, tmp_path: Path
) -> None:
    os.environ["GUETTEUR_TOPIC_PARTITIONS"] = str(PARTITIONS)
    try:
        _scenario(Settings(), workers, tmp_path)
    finally:
        os.environ.pop("GUETTEUR_TOPIC_PARTITIONS", None)


def _scenario(settings: Settings, workers: int, tmp_path: Path) -> None:
    day = simulate(practices=12, days=2, seed=41)
    expected = offline(day.events)
    ensure_topics(settings)
    publish(settings, settings.topic_events, [json.dumps(e).encode() for e in day.events])
    client = sync_client(settings)
    env = {**ENV, "GUETTEUR_BATCH_SIZE": "100", "GUETTEUR_TOPIC_PARTITIONS": str(PARTITIONS)}
    ports = free_ports(workers)
    running = [
        WorkerProcess(
            tmp_path / f"worker-{n}.log",
            env={
                **env,
                "GUETTEUR_WEB_PORT": str(ports[n]),
                "GUETTEUR_DATA_DIR": str(tmp_path / f"data-{n}"),
            },
        ).start()
        for n in range(workers)
    ]
    victim, laggard, *others = running
    try:
        deadline = time.monotonic() + 120
        while len(stored_history(client, settings)) < len(day.events) // 5:
            assert all(w.alive() for w in running), _logs(tmp_path)
            assert time.monotonic() < deadline, _logs(tmp_path)
            time.sleep(0.2)
        # One worker stops reading for a while (less than the session timeout): its
        # partitions lag behind the others'.
        assert laggard.proc is not None
        laggard.proc.send_signal(signal.SIGSTOP)
        time.sleep(4)
        victim.kill()  # and another dies, mid-stream
        time.sleep(2)
        laggard.proc.send_signal(signal.SIGCONT)

        found: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert all(w.alive() for w in [laggard, *others]), _logs(tmp_path)
            found = stored_alerts(client, settings)
            done = all(
                found.get(i, {}).get("event_count") == a["event_count"] for i, a in expected.items()
            )
            if done and len(found) >= len(expected):
                time.sleep(3)  # anything extra still in flight would show now
                found = stored_alerts(client, settings)
                break
            time.sleep(1)
        # The history is written beside detection, not before it: it may finish a little later.
        deadline = time.monotonic() + 60
        while len(stored := stored_history(client, settings)) < len(day.events):
            if time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        for worker in running:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGCONT)
            worker.stop()
    # Nothing false, nothing lost.
    why = partial(_difference, found, expected, settings, tmp_path)
    assert comparable(found) == comparable(expected), why()
    client.indices.refresh(index=settings.alerts_index)
    assert client.count(index=settings.alerts_index)["count"] == len(expected)  # each once
    assert len(stored) == len(day.events), f"{len(stored)} of {len(day.events)} events stored"


def _difference(
    found: dict[str, Any], expected: dict[str, Any], settings: Settings, logs: Path
) -> str:
    def brief(alert: dict[str, Any]) -> str:
        return f"{alert['rule_id']} at {alert['timestamp']} ({alert['event_count']} events)"

    ours, theirs = comparable(found), comparable(expected)
    lost = [brief(a) for i, a in expected.items() if ours.get(i) != theirs[i]]
    false = [brief(a) for i, a in found.items() if i not in expected]
    missing = {
        event_id
        for i, a in expected.items()
        if ours.get(i) != theirs[i]
        for event_id in set(a["event_ids"]) - set(found.get(i, {}).get("event_ids", []))
    }
    return (
        f"lost or incomplete: {lost}; not expected: {false}; "
        f"where the missing evidence was last seen: {_trace(settings, missing)}; "
        f"what the workers logged: {_digest(logs)}"
    )


def _trace(settings: Settings, event_ids: set[str]) -> dict[str, list[str]]:
    """For each missing event, the internal topics that carry it (stage by stage)."""
    from kafka import KafkaConsumer

    seen: dict[str, list[str]] = {event_id: [] for event_id in event_ids}
    for topic in (
        settings.topic_events,
        settings.detect_topic,
        settings.alert_parts_topic,
        settings.topic_alerts,
    ):
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_servers(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=3000,
        )
        for message in consumer:
            text = message.value.decode(errors="replace")
            for event_id in event_ids:
                if event_id in text:
                    where = f"{topic}[{message.partition}]@{message.offset}"
                    if topic == settings.detect_topic:
                        where += _readable(message.value)
                    seen[event_id].append(where)
        consumer.close()
    seen["committed detect offsets"] = [str(_committed(settings, settings.detect_topic))]
    return seen


def _readable(value: bytes) -> str:
    from streams.detection import routing

    try:
        routing.decode(value)
    except Exception as exc:
        return f" (undecodable: {exc})"
    return ""


def _committed(settings: Settings, topic: str) -> dict[int, int]:
    import asyncio

    from streams.topics import GroupOffsets

    offsets = GroupOffsets(settings, settings.app_id)
    try:
        return asyncio.run(offsets.committed(topic, list(range(PARTITIONS))))
    finally:
        offsets.close()


def _digest(tmp_path: Path) -> dict[str, Any]:
    """Per worker, its warnings and errors (counted) and its last detect batches: a failure
    seen only on another machine must be explainable from the test's output alone."""
    digest: dict[str, Any] = {}
    for log in sorted(tmp_path.glob("*.log")):
        problems: Counter[str] = Counter()
        batches: list[str] = []
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                problems[f"(text) {line[:100]}"] += 1
                continue
            message = str(record.get("message", "")).split("\n", 1)[0]
            if record.get("log.level") in ("warning", "error", "critical"):
                where = record.get("kafka.partition", "")  # partition 0 shown too
                problems[f"{record['log.level']}: {message[:100]} {where}".strip()] += 1
            elif message == "detect batch":
                batches.append(f"{record.get('batch.offsets')} clock {record.get('detect.clock')}")
            elif _telling(record.get("log.logger", ""), message):
                problems[f"info: {message[:100]}"] += 1
        digest[log.name] = {"problems": dict(problems), "last detect batches": batches[-3:]}
    return digest


def _telling(logger: str, message: str) -> bool:
    """Info lines that say where a rebalance or a table recovery stands."""
    words = ("assign", "generation", "revok", "recover", "resum", "seek")
    return logger == "faust.tables.recovery" or any(w in message.lower() for w in words)


def _logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text()[-1500:]}" for log in sorted(tmp_path.glob("*.log"))
    )

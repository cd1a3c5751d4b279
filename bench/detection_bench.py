"""Detection through Kafka: Guetteur's detect agent against a naive table-per-event agent.

    python -m bench.detection_bench [--practices N]

Both read the same routed events (every event of a simulated day, once per detector that wants
it, plus clock ticks) from the same topic on the local broker, one after the other. The detect
agent runs the real detectors and writes each touched state once per batch; the naive agent
only stores a counter and the last event per key, but writes the table on every event. The
figure that matters is the ratio: absolute events/s drift on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from detectors.models import AccessEvent
from detectors.policy import load_policy
from detectors.registry import all_detectors
from detectors.runner import log_error
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.detection.routing import route
from streams.detection.watermark import encode_tick
from streams.keys import Key
from streams.pseudonym import Pseudonymizer, pseudonymise
from streams.settings import Settings, StackSettings
from streams.stack import LocalStack
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess

PSEUDONYM_KEY = "bench-only-pseudonymisation-key-0123456789"
CHECKPOINT_KEY = "bench-only-checkpoint-signing-key-9876543210"
TICK_EVERY = 200


def _tick(at: datetime) -> bytes:
    """Every source partition at ``at``, as the ingest agent tells the detect partitions."""
    return encode_tick(dict.fromkeys(range(Settings().topic_partitions), at))


def routed_messages(practices: int) -> tuple[list[tuple[bytes | None, bytes, int | None]], int]:
    """(key, value, partition) messages as the ingest agent sends them; and how many events."""
    pseudonymizer = Pseudonymizer(Key("bench", PSEUDONYM_KEY.encode()))
    detectors = all_detectors(load_policy(DEMO_POLICY))
    events = [
        pseudonymise(AccessEvent.model_validate_json(json.dumps(e)), pseudonymizer)
        for e in simulate(practices=practices, days=1).events
    ]
    messages: list[tuple[bytes | None, bytes, int | None]] = []
    routed = 0
    for number, event in enumerate(events, start=1):
        for item in route(detectors, event, log_error):
            messages.append((json.dumps(item.message_key).encode(), item.encode(), None))
            routed += 1
        if number % TICK_EVERY == 0:
            messages += [
                (None, _tick(event.timestamp), p) for p in range(Settings().topic_partitions)
            ]
    return messages, routed


def publish(settings: Settings, messages: list[tuple[bytes | None, bytes, int | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers(), linger_ms=20)
    for key, value, partition in messages:
        producer.send(settings.detect_topic, key=key, value=value, partition=partition)
    producer.flush()
    producer.close()


def rate(points: list[tuple[float, int]]) -> float:
    """Events/s between the first and the last progress report (start-up left out)."""
    (t0, n0), (t1, n1) = points[0], points[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def run_detect_agent(env: dict[str, str], total: int, workdir: Path) -> list[tuple[float, int]]:
    log = workdir / "detect.log"
    points: list[tuple[float, int]] = []
    with WorkerProcess(log, env=env) as worker:
        deadline = time.monotonic() + 600
        while (not points or points[-1][1] < total) and time.monotonic() < deadline:
            if not worker.alive():
                raise SystemExit(f"the worker died:\n{log.read_text()[-2000:]}")
            points = _detect_progress(log)
            time.sleep(0.5)
    return points


def _detect_progress(log: Path) -> list[tuple[float, int]]:
    points, done = [], 0
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("message") == "detect batch":
            done += record["batch.size"]
            stamp = datetime.fromisoformat(record["@timestamp"]).timestamp()
            points.append((stamp, done))
    return points


def run_naive_agent(env: dict[str, str], routed: int, workdir: Path) -> list[tuple[float, int]]:
    log, progress = workdir / "naive.log", workdir / "naive.progress"
    target = routed - routed % 500  # it reports every 500 events
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.naive_agent", "worker", "--loglevel", "warn"],
            env={**env, "BENCH_PROGRESS": str(progress)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    points: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 600
        while (not points or points[-1][1] < target) and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if progress.exists():
                lines = progress.read_text().splitlines()
                points = [(r["t"], r["events"]) for r in map(json.loads, lines)]
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(30)
    if len(points) < 2:
        raise SystemExit(f"the naive agent reported no progress:\n{log.read_text()[-2000:]}")
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--practices", type=int, default=60)
    args = parser.parse_args()
    LocalStack(StackSettings()).up(progress=lambda message: None)
    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        env = {
            **os.environ,
            "GUETTEUR_APP_ID": f"bench-{run_id}",
            "GUETTEUR_TOPIC_EVENTS": f"bench-{run_id}-events",
            "GUETTEUR_TOPIC_DLQ": f"bench-{run_id}-dlq",
            "GUETTEUR_TOPIC_ALERTS": f"bench-{run_id}-alerts",
            "GUETTEUR_INDEX_PREFIX": f"bench-{run_id}",
            "GUETTEUR_DATA_DIR": str(workdir / "worker"),
            "GUETTEUR_WEB_PORT": "6099",
            "GUETTEUR_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "GUETTEUR_CHECKPOINT_KEY": CHECKPOINT_KEY,
            "GUETTEUR_POLICY_FILE": str(DEMO_POLICY),
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith("GUETTEUR_")})
        settings = Settings()
        ensure_topics(settings)
        messages, routed = routed_messages(args.practices)
        publish(settings, messages)
        print(
            f"{routed} routed events (+ {len(messages) - routed} clock ticks), "
            f"{settings.topic_partitions} partitions, broker {settings.kafka_servers()}"
        )
        detect = run_detect_agent(env, len(messages), workdir)
        naive_env = {
            **env,
            "BENCH_NAIVE_APP_ID": f"bench-{run_id}-naive",
            "BENCH_TOPIC": settings.detect_topic,
            "BENCH_PARTITIONS": str(settings.topic_partitions),
            "BENCH_KAFKA": settings.kafka_servers(),
            "BENCH_DATADIR": str(workdir / "naive"),
        }
        naive = run_naive_agent(naive_env, routed, workdir)
    # The detect agent's batches count ticks too: scale to routed events.
    ours, theirs = rate(detect) * routed / len(messages), rate(naive)
    rows: list[tuple[str, Any]] = [
        ("detect agent (real detectors, state per batch)", f"{ours:,.0f} events/s"),
        ("naive agent (a table write per event)", f"{theirs:,.0f} events/s"),
        ("ratio detect / naive", f"{ours / theirs:.2f}x"),
    ]
    for label, value in rows:
        print(f"{label:<50} {value:>16}")


if __name__ == "__main__":
    main()

"""Event -> alert latency of the whole worker under sustained load.

    python -m bench.latency_bench [--rates 500,1000,5000] [--seconds 20]

For each rate, a fresh worker reads a topic fed at that many events/s of live traffic
(timestamps = now): practitioners reading appointments (no alert), and once a second a support
agent exporting patient data, a finding no later event can refute (``support.non_view_action``),
so it must alert at once. Latency is measured from the moment the export is handed to the
producer to the moment its event id first appears in an alert on ``access-alerts``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from bench.worker_bench import documents
from streams.demo.simulate import DEMO_POLICY
from streams.elastic import sync_client
from streams.settings import Settings, StackSettings
from streams.stack import LocalStack
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess

PSEUDONYM_KEY = "bench-only-pseudonymisation-key-0123456789"
CHECKPOINT_KEY = "bench-only-checkpoint-signing-key-9876543210"


def _event(event_id: str, **fields: Any) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "source": "practice_app",
            "action": "view",
            "actor": {"id": f"dr-{event_id[-2:]}", "role": "practitioner"},
            "practice_id": f"prac-{event_id[-1]}",
            "patient_id": f"P-{event_id[-3:]}",
            "data_category": "appointment",
            **fields,
        }
    ).encode()


def _marker(event_id: str) -> bytes:
    return _event(
        event_id,
        source="remote_support",
        action="export",
        actor={"id": f"sup-{event_id}", "role": "support_agent", "country": "FR"},
        data_category="medical",
        session_id=f"rs-{event_id}",
    )


class AlertWatch(threading.Thread):
    """When each event id first appears in an alert on the alerts topic."""

    def __init__(self, settings: Settings):
        super().__init__(daemon=True)
        self.settings = settings
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(
            self.settings.topic_alerts,
            bootstrap_servers=self.settings.kafka_servers(),
            auto_offset_reset="earliest",
            consumer_timeout_ms=200,
        )
        while not self.stop.is_set():
            for record in consumer:
                now = time.time()
                for event_id in json.loads(record.value)["event_ids"]:
                    self.seen.setdefault(event_id, now)
        consumer.close()


def run_rate(rate: int, seconds: float, workdir: Path) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    env = {
        "GUETTEUR_APP_ID": f"lat-{run_id}",
        "GUETTEUR_TOPIC_EVENTS": f"lat-{run_id}-events",
        "GUETTEUR_TOPIC_DLQ": f"lat-{run_id}-dlq",
        "GUETTEUR_TOPIC_ALERTS": f"lat-{run_id}-alerts",
        "GUETTEUR_INDEX_PREFIX": f"lat-{run_id}",
        "GUETTEUR_DATA_DIR": str(workdir / run_id),
        "GUETTEUR_WEB_PORT": "6098",
        "GUETTEUR_PSEUDONYM_KEY_ID": "bench",
        "GUETTEUR_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "GUETTEUR_CHECKPOINT_KEY": CHECKPOINT_KEY,
        "GUETTEUR_POLICY_FILE": str(DEMO_POLICY),
        "GUETTEUR_PAGE_SEVERITIES": "off",
    }
    os.environ.update(env)
    settings = Settings()
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_servers(), linger_ms=5)
    watch = AlertWatch(settings)
    watch.start()
    with WorkerProcess(workdir / f"{run_id}.log") as worker:
        # Ready when a first event is in the history: start-up is not latency.
        producer.send(settings.topic_events, _event("warm-up-000"))
        producer.flush()
        client = sync_client(settings)
        while not documents(client, settings.history_index):
            client.indices.refresh(index=settings.history_index, ignore_unavailable=True)
            if not worker.alive():
                raise SystemExit((workdir / f"{run_id}.log").read_text()[-2000:])
            time.sleep(0.2)
        sent: dict[str, float] = {}
        started = time.monotonic()
        total = int(rate * seconds)
        for n in range(total):
            due = started + n / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if n % rate == 0:
                event_id = f"marker-{n:09d}"
                producer.send(settings.topic_events, _marker(event_id), key=event_id.encode())
                sent[event_id] = time.time()
            else:
                producer.send(settings.topic_events, _event(f"ev-{n:09d}"))
        producer.flush()
        achieved = total / (time.monotonic() - started)
        deadline = time.monotonic() + 120
        while len(watch.seen.keys() & sent.keys()) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.2)
    watch.stop.set()
    producer.close()
    latencies = sorted(watch.seen[i] - t for i, t in sent.items() if i in watch.seen)
    if not latencies:
        return {"rate": rate, "achieved": achieved, "alerts": 0, "markers": len(sent)}
    return {
        "rate": rate,
        "achieved": achieved,
        "markers": len(sent),
        "alerts": len(latencies),
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="500,1000,5000")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    LocalStack(StackSettings()).up(progress=lambda message: None)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_rate(int(rate), args.seconds, Path(tmp)) for rate in args.rates.split(",")]
    print(f"{'rate':>6} {'sent/s':>8} {'alerted':>9} {'p50 s':>7} {'p99 s':>7}")
    for r in results:
        p50 = f"{r['p50']:.2f}" if "p50" in r else "-"
        p99 = f"{r['p99']:.2f}" if "p99" in r else "-"
        alerted = f"{r['alerts']}/{r['markers']}"
        print(f"{r['rate']:>6} {r['achieved']:>8.0f} {alerted:>9} {p50:>7} {p99:>7}")


if __name__ == "__main__":
    main()

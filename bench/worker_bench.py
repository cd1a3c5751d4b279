"""The whole worker, end to end, against plain Faust agents on the same source topic.

    python -m bench.worker_bench [--practices N] [--days D]

One topic of simulated access events (raw JSON, as producers send them) on the local broker,
read in turn by three consumer groups:

- ``plain``: a Faust agent that only iterates the topic (the ceiling: Faust's own cost);
- ``naive``: a Faust agent that parses each event and writes a table entry per event;
- ``worker``: ``guetteur worker``, timed from its first indexed batch until the history holds
  every event and detection has run every detector over every event it wants (its throughput),
  and then until the alerts index holds every incident the offline runner finds, with all its
  evidence (the last of which wait, by design, for the source to fall idle: their deadline is
  after the last event). What a user gets, not one agent on pre-digested input.

Absolute events/s drift on a shared machine; the ratios, measured in the same run, are the
figures to compare between commits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch, NotFoundError

from detectors.policy import load_policy
from detectors.registry import all_detectors
from detectors.runner import detect, log_error
from detectors.runner import routes as runner_routes
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.elastic import sync_client
from streams.keys import Key
from streams.minimise import protected
from streams.producer import publish
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings, StackSettings
from streams.stack import LocalStack
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess

PSEUDONYM_KEY = "bench-only-pseudonymisation-key-0123456789"
CHECKPOINT_KEY = "bench-only-checkpoint-signing-key-9876543210"
TIMEOUT = 900.0


def expected(events: list[dict[str, Any]]) -> tuple[dict[str, int], int]:
    """alert id -> evidence count, as the offline runner finds them; and how many (event,
    detector) routes the detect stage has to run (stateless detectors run at ingest)."""
    pseudonymizer = Pseudonymizer(Key("bench", PSEUDONYM_KEY.encode()))
    policy = load_policy(DEMO_POLICY)
    parsed = protected(events, policy, pseudonymizer)
    detectors = all_detectors(policy)
    alerts = detect(parsed, detectors)
    routed = {name: d for name, d in detectors.items() if not d.stateless}
    routes = sum(len(runner_routes(routed, event, log_error)) for event in parsed)
    return {alert.alert_id: alert.event_count for alert in alerts}, routes


def run_baseline(mode: str, env: dict[str, str], total: int, workdir: Path) -> float:
    """Events/s of a baseline agent between its first and last progress report."""
    progress = workdir / f"{mode}.progress"
    log = workdir / f"{mode}.log"
    target = total - total % 500
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_agent", "worker", "--loglevel", "warn"],
            env={
                **env,
                "BENCH_MODE": mode,
                "BENCH_PROGRESS": str(progress),
                "BENCH_APP_ID": f"{env['GUETTEUR_APP_ID']}-{mode}",
                "BENCH_DATADIR": str(workdir / mode),
            },
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    points: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while (not points or points[-1][1] < target) and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if progress.exists():
                lines = progress.read_text().splitlines()
                points = [(r["t"], r["events"]) for r in map(json.loads, lines)]
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(30)
    if len(points) < 2 or points[-1][1] < target:
        raise SystemExit(f"the {mode} agent did not finish:\n{log.read_text()[-2000:]}")
    (t0, n0), (t1, n1) = points[0], points[-1]
    return (n1 - n0) / (t1 - t0)


def documents(client: Elasticsearch, index: str) -> int:
    """Documents in ``index``; 0 while it does not exist or its shards are still starting."""
    try:
        return int(client.count(index=index)["count"])
    except ApiError as exc:
        if exc.meta.status in (404, 503):
            return 0
        raise


def _incidents(client: Elasticsearch, settings: Settings) -> dict[str, int]:
    try:
        client.indices.refresh(index=settings.alerts_index)
        hits = client.search(
            index=settings.alerts_index, size=10_000, source_includes=["event_count"]
        )["hits"]["hits"]
    except NotFoundError:
        return {}
    return {hit["_id"]: hit["_source"]["event_count"] for hit in hits}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _first_batch(log: Path) -> float | None:
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"batch indexed"' in line:
            return datetime.fromisoformat(json.loads(line)["@timestamp"]).timestamp()
    return None


def _detected(log: Path) -> tuple[int, float | None]:
    """Routes the detect agent has run so far, and when it logged the last of them."""
    routed, last = 0, None
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"detect batch"' in line:
            record = json.loads(line)
            if record.get("batch.routed"):
                routed += record["batch.routed"]
                last = datetime.fromisoformat(record["@timestamp"]).timestamp()
    return routed, last


@dataclass(frozen=True)
class WorkerRun:
    throughput: float  # events/s until history and detection have seen every event
    complete_after: float  # seconds from the first batch until every incident is complete
    rss_mib: float  # at the end
    rss_early_mib: float | None  # once a tenth of the events were indexed: the end should be near
    rss_peak_mib: float


def run_worker(
    env: dict[str, str],
    settings: Settings,
    events: int,
    routes: int,
    incidents: dict[str, int],
    workdir: Path,
) -> WorkerRun:
    client = sync_client(settings)
    log = workdir / "worker.log"
    with WorkerProcess(log, env=env) as worker:
        deadline = time.monotonic() + TIMEOUT
        indexed_at: float | None = None
        assert worker.proc is not None
        early: float | None = None
        peak = 0.0
        while time.monotonic() < deadline:
            if not worker.alive():
                raise SystemExit(f"the worker died:\n{log.read_text()[-2000:]}")
            rss = _rss_mib(worker.proc.pid)
            peak = max(peak, rss)
            if indexed_at is None:
                client.indices.refresh(index=settings.history_index, ignore_unavailable=True)
                indexed = documents(client, settings.history_index)
                if early is None and indexed >= events / 10:
                    early = rss
                if indexed >= events:
                    indexed_at = time.time()
            elif all(_incidents(client, settings).get(i) == n for i, n in incidents.items()):
                # And detection has run every route: on a long run it lags behind ingestion,
                # and incidents that all sit early in the data complete long before it is done.
                if _detected(log)[0] >= routes:
                    break
                time.sleep(1.0)  # reading the whole log: not every 0.25 s
            time.sleep(0.25)
        else:
            raise SystemExit(f"the worker did not finish:\n{log.read_text()[-2000:]}")
        complete = time.time()
        rss = _rss_mib(worker.proc.pid)
    start = _first_batch(log)
    detected, detected_at = _detected(log)
    if start is None or indexed_at is None or detected_at is None or detected < routes:
        raise SystemExit(f"detection ran {detected} of {routes} routes:\n{log.read_text()[-2000:]}")
    throughput = events / (max(indexed_at, detected_at) - start)
    return WorkerRun(throughput, complete - start, rss, early, max(peak, rss))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--practices", type=int, default=40)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--keep-log", type=Path, help="copy the worker's log here")
    parser.add_argument(
        "--worker-only",
        action="store_true",
        help="skip the baselines (no ratios): to compare settings, or for RSS on a long run",
    )
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
            "GUETTEUR_PSEUDONYM_KEY_ID": "bench",
            "GUETTEUR_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "GUETTEUR_CHECKPOINT_KEY": CHECKPOINT_KEY,
            "GUETTEUR_POLICY_FILE": str(DEMO_POLICY),
            "GUETTEUR_PAGE_SEVERITIES": "off",
        }
        os.environ.update({k: v for k, v in env.items() if k.startswith("GUETTEUR_")})
        settings = Settings()
        ensure_topics(settings)
        # Days that have all passed: the worker refuses events stamped in its future.
        first = date.today() - timedelta(days=args.days + 1)
        events = simulate(practices=args.practices, days=args.days, start=first, seed=3).events
        incidents, routes = expected(events)
        publish(settings, settings.topic_events, [json.dumps(e).encode() for e in events])
        print(
            f"{len(events)} events ({len(incidents)} incidents) on {settings.topic_partitions} "
            f"partitions of {settings.topic_events}, broker {settings.kafka_servers()}"
        )
        baseline_env = {
            **env,
            "BENCH_TOPIC": settings.topic_events,
            "BENCH_PARTITIONS": str(settings.topic_partitions),
            "BENCH_KAFKA": settings.kafka_servers(),
        }
        plain = naive = float("nan")
        if not args.worker_only:
            plain = run_baseline("plain", baseline_env, len(events), workdir)
            naive = run_baseline("naive", baseline_env, len(events), workdir)
        try:
            run = run_worker(env, settings, len(events), routes, incidents, workdir)
        finally:
            if args.keep_log:
                shutil.copy(workdir / "worker.log", args.keep_log)
    worker = run.throughput
    rows = [
        ("plain Faust agent (iterates the topic)", f"{plain:,.0f} events/s"),
        ("naive agent (a table write per event)", f"{naive:,.0f} events/s"),
        ("whole worker, end to end", f"{worker:,.0f} events/s"),
        ("worker / plain", f"{worker / plain:.2f}x"),
        ("worker / naive", f"{worker / naive:.2f}x"),
        ("every incident complete after", f"{run.complete_after:.1f} s"),
        ("worker RSS, a tenth indexed", f"{run.rss_early_mib or 0:,.0f} MiB"),
        ("worker RSS at the end", f"{run.rss_mib:,.0f} MiB"),
        ("worker RSS, peak", f"{run.rss_peak_mib:,.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()

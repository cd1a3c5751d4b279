"""The whole worker fed FHIR AuditEvents (and IHE ATNA messages) against native contract JSON.

    python -m bench.foreign_bench [--events N] [--no-atna] [--as-simulated] [--keep-logs DIR]

The same logical access events (``streams.demo`` traffic, as ``bench.worker_bench`` makes it)
reach a fresh ``guetteur worker`` in turn, each run on its own topics and indices:

- ``native``: contract JSON on the events topic, as producers send it;
- ``fhir``: each event rewritten as one FHIR R4 ``AuditEvent`` on ``<events>-fhir``;
- ``atna``: each event rewritten as one DICOM PS3.15 ``AuditMessage`` on ``<events>-atna``.

Each run is timed from the worker's "Ready" (start-up done, nothing read yet) until the history
holds every event and detection has run every route it wants (``worker_bench`` times from the
first indexed batch, printed too, which a foreign run reaches only after mapping a few batches
ahead); then until the alerts index holds every incident the offline runner finds over the
events the run's worker ingests.

Same logical events: actions no audit record has a shape for (sessions, consents, screenshots)
are left out of every run, and so is what the records cannot carry (an actor's country, a
session id, a record count...): otherwise detection would have other work in the native run
(its support sessions, their consent left out, would alert). ``--as-simulated`` gives the
native run its events whole all the same.

The policy file the bench writes is the demo's plus a ``[mapping]`` section: a site per
(source, practice) so both round-trip, the accounts whose role no standard code says, and bench
codes for what no standard code says (``download``; the purposes support, migration, other).
Before any worker starts, every record is mapped here as the worker will map it, and must give
back its event.

Absolute events/s drift on a shared machine; the ratios, measured in the same run, are the
figures to compare between commits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from adapters import atna, fhir
from bench.foreign_records import (
    Event,
    carried,
    expressible,
    lost_fields,
    mapped,
    policy_text,
    to_atna,
    to_fhir,
)
from bench.worker_bench import (
    CHECKPOINT_KEY,
    PSEUDONYM_KEY,
    WorkerRun,
    _first_batch,
    documents,
    expected,
    run_worker,
)
from detectors.policy import load_policy
from streams.decode import decode
from streams.demo.simulate import simulate
from streams.elastic import sync_client
from streams.producer import Record, publish_records
from streams.settings import Settings, StackSettings
from streams.stack import LocalStack
from streams.topics import ensure_topics


def bench_events(count: int, days: int) -> tuple[list[Event], Counter[str]]:
    """The first ``count`` expressible simulated events, and the actions left out."""
    first = date.today() - timedelta(days=days + 1)  # the worker refuses future events
    practices = max(1, math.ceil(count / (days * 115)))
    while True:
        events = simulate(practices=practices, days=days, start=first, seed=3).events
        kept = [e for e in events if expressible(e)]
        if len(kept) >= count:
            break
        practices += max(1, math.ceil((count - len(kept)) / (days * 115)))
    kept = kept[:count]
    last = kept[-1]["timestamp"], kept[-1]["event_id"]
    within = [e for e in events if (e["timestamp"], e["event_id"]) <= last]
    return kept, Counter(e["action"] for e in within if not expressible(e))


def per_record_us(function: Callable[[bytes], object], payloads: list[bytes]) -> float:
    """Microseconds per call, the best of three passes (after a warm-up)."""
    for payload in payloads[:50]:
        function(payload)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for payload in payloads:
            function(payload)
        best = min(best, time.perf_counter() - start)
    return best / len(payloads) * 1e6


@dataclass(frozen=True)
class FormatRun:
    worker: WorkerRun
    seconds: float  # from the worker's "Ready" until history and detection had every event
    documents: int  # in the history at the end
    incidents: int  # the worker had to complete

    @property
    def throughput(self) -> float:
        return self.documents / self.seconds


def _ready(log: Path) -> float:
    """When Faust said the worker was ready, before it read any event."""
    for line in log.read_text().splitlines():
        if line.startswith("{") and 'Worker]: Ready"' in line:
            return datetime.fromisoformat(json.loads(line)["@timestamp"]).timestamp()
    raise SystemExit(f"the worker never said it was ready:\n{log.read_text()[-2000:]}")


def run_format(
    name: str,
    run_id: str,
    policy: Path,
    records: list[Record],
    topic: Callable[[Settings], str],
    events: list[Event],
    workdir: Path,
) -> FormatRun:
    """One worker from a fresh app id, topics and indices, on ``records`` published to its
    ``topic``, which must give ``events``."""
    workdir.mkdir()
    env = {
        **os.environ,
        "GUETTEUR_APP_ID": f"bench-{run_id}-{name}",
        "GUETTEUR_TOPIC_EVENTS": f"bench-{run_id}-{name}-events",
        "GUETTEUR_TOPIC_DLQ": f"bench-{run_id}-{name}-dlq",
        "GUETTEUR_TOPIC_ALERTS": f"bench-{run_id}-{name}-alerts",
        "GUETTEUR_INDEX_PREFIX": f"bench-{run_id}-{name}",
        "GUETTEUR_DATA_DIR": str(workdir / "worker"),
        "GUETTEUR_WEB_PORT": "6099",
        "GUETTEUR_PSEUDONYM_KEY_ID": "bench",
        "GUETTEUR_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "GUETTEUR_CHECKPOINT_KEY": CHECKPOINT_KEY,
        "GUETTEUR_POLICY_FILE": str(policy),
        "GUETTEUR_PAGE_SEVERITIES": "off",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("GUETTEUR_")})
    settings = Settings()
    ensure_topics(settings)
    publish_records(settings, topic(settings), records)
    # The bench policy is the demo's plus [mapping], which detection does not read.
    incidents, routes = expected(events)
    print(f"{name}: {len(records)} messages on {topic(settings)}", flush=True)
    run = run_worker(env, settings, len(events), routes, incidents, workdir)
    # run_worker times from the first indexed batch, which a foreign run reaches only once its
    # translate agent has mapped a few batches ahead: from "Ready", every run is timed alike.
    log = workdir / "worker.log"
    first = _first_batch(log)
    assert first is not None
    done = first + len(events) / run.throughput
    client = sync_client(settings)
    client.indices.refresh(index=settings.history_index)
    indexed = documents(client, settings.history_index)
    return FormatRun(run, done - _ready(log), indexed, len(incidents))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--no-atna", action="store_true", help="skip the ATNA run")
    parser.add_argument(
        "--as-simulated",
        action="store_true",
        help="give the native run the events whole, with what the records cannot carry "
        "(its detection then has other work: consent-less sessions alert, for one)",
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the workers' logs to this folder")
    args = parser.parse_args()
    LocalStack(StackSettings()).up(progress=lambda message: None)
    simulated, skipped = bench_events(args.events, args.days)
    events = simulated if args.as_simulated else [carried(e) for e in simulated]
    native = [json.dumps(e).encode() for e in events]
    resources = [json.dumps(to_fhir(e)).encode() for e in events]
    messages = [to_atna(e) for e in events]
    keys = [str(e["practice_id"]).encode() if "practice_id" in e else None for e in events]
    run_id = uuid.uuid4().hex[:8]
    runs: dict[str, FormatRun] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        policy = workdir / "policy.toml"
        policy.write_text(policy_text(events))
        table = load_policy(policy).mapping
        from_fhir = mapped(resources, fhir.translate, table)
        from_atna = mapped(messages, atna.translate, table)
        lost = lost_fields(simulated, from_fhir)
        assert lost == lost_fields(simulated, from_atna)
        left_out = ", ".join(f"{n} {action}" for action, n in sorted(skipped.items()))
        print(
            f"{len(events)} events, the same in every run (left out of all: {left_out}; "
            "no audit record shape)"
        )
        print(
            ("native run given them whole; " if args.as_simulated else "every run without ")
            + "what FHIR and ATNA records cannot carry: "
            + ", ".join(f"{key} in {n}" for key, n in lost.most_common())
        )
        print(
            "bytes per event: "
            f"native {sum(map(len, native)) / len(native):,.0f}, "
            f"FHIR {sum(map(len, resources)) / len(resources):,.0f}, "
            f"ATNA {sum(map(len, messages)) / len(messages):,.0f}"
        )
        sample = slice(0, min(len(events), 2000))
        profile = [
            ("native: json.loads", per_record_us(json.loads, native[sample])),
            ("native: streams.decode.decode", per_record_us(decode, native[sample])),
            ("FHIR: json.loads", per_record_us(json.loads, resources[sample])),
            (
                "FHIR: adapters.fhir.translate",
                per_record_us(lambda raw: fhir.translate(raw, table), resources[sample]),
            ),
            (
                "ATNA: adapters.atna.translate",
                per_record_us(lambda raw: atna.translate(raw, table), messages[sample]),
            ),
        ]
        plans: list[tuple[str, list[bytes], Callable[[Settings], str], list[Event]]] = [
            ("native", native, lambda s: s.topic_events, events),
            ("fhir", resources, lambda s: s.fhir_topic, from_fhir),
        ]
        if not args.no_atna:
            plans.append(("atna", messages, lambda s: s.atna_topic, from_atna))
        try:
            for name, payloads, topic, expect in plans:
                records = [Record(p, k) for p, k in zip(payloads, keys, strict=True)]
                runs[name] = run_format(
                    name, run_id, policy, records, topic, expect, workdir / name
                )
        finally:
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for name in runs:
                    shutil.copy(workdir / name / "worker.log", args.keep_logs / f"{name}.log")
    indexed = {name: run.documents for name, run in runs.items()}
    assert set(indexed.values()) == {len(events)}, f"history documents per run: {indexed}"

    print("mapping alone, one core, this process (µs per record):")
    for label, micros in profile:
        print(f"  {label:<32} {micros:8.1f}")
    base = runs["native"].throughput
    header = ["run", "events", "seconds", "events/s", "(from 1st batch)", "incidents"]
    rows: list[tuple[str, ...]] = [(*header, "all complete", "RSS peak")]
    for name, run in runs.items():
        rows.append(
            (
                name,
                f"{run.documents:,}",
                f"{run.seconds:.1f}",
                f"{run.throughput:,.0f}",
                f"{run.worker.throughput:,.0f}",
                f"{run.incidents}",
                f"{run.worker.complete_after:.1f} s",
                f"{run.worker.rss_peak_mib:,.0f} MiB",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    for name, run in runs.items():
        if name != "native":
            print(f"{name} / native: {run.throughput / base:.2f}x")


if __name__ == "__main__":
    main()

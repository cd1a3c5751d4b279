"""``guetteur demo``: the whole path on the local stack, end to end, in one command."""

from __future__ import annotations

import json
import time
from typing import Any

import click
from elasticsearch import Elasticsearch, NotFoundError

from streams import dead_letters
from streams.cli.output import emit, emit_record, progress, stderr, stdout
from streams.demo.sample import sample_morning
from streams.elastic import sync_client
from streams.history.checkpoints import load_checkpoint_keys
from streams.history.templates import prepare
from streams.history.verify import verify
from streams.producer import publish
from streams.settings import Settings, StackSettings, load
from streams.stack import LocalStack
from streams.stack.process import tail
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess

# Malformed messages a real producer may send: the worker must survive them.
MALFORMED = [b"{not json", b'{"event_id": "demo-bad-1", "timestamp": "2026-11-16T10:00:00"}']


@click.command()
@click.option("--practices", default=3, show_default=True, help="How many practices to simulate.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for indexing.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON lines.")
def demo(practices: int, timeout: float, as_json: bool) -> None:
    """Start the local stack and a worker, replay a morning of accesses, show what was indexed."""
    stack_settings = load(StackSettings)
    # Demo mode: synthetic data, so generated keys are allowed (unless keys are configured).
    settings = load(Settings).model_copy(update={"demo": True})
    with progress("demo") as report:
        LocalStack(stack_settings).up(report)
        ensure_topics(settings)
        prepare(sync_client(settings), settings)
        letters_before = dead_letters.count(settings)
        events = sample_morning(practices=practices)
        log_file = stack_settings.dir / "logs" / "demo-worker.log"
        log_file.unlink(missing_ok=True)
        with WorkerProcess(log_file, env={"GUETTEUR_DEMO": "1"}) as worker:
            payloads = [json.dumps(event).encode() for event in events] + MALFORMED
            publish(
                settings,
                settings.topic_events,
                payloads,
                on_sent=lambda n: report(f"published {n}/{len(payloads)} messages"),
            )
            client = sync_client(settings)
            indexed = _wait_for_documents(
                client,
                settings.history_index,
                {e["event_id"] for e in events},
                timeout,
                report,
                worker,
            )
            dead_lettered = _wait_for_dead_letters(settings, letters_before, len(MALFORMED), worker)
            worker_died = not worker.alive()
    stderr.print(f"worker log: {log_file}")
    if worker_died:
        raise click.ClickException(f"the worker exited early; its log says:\n{tail(log_file, 15)}")
    summary = {
        "published": len(events) + len(MALFORMED),
        "valid": len(events),
        "malformed": len(MALFORMED),
        "indexed_from_this_run": indexed,
        "new_dead_letters": dead_lettered,
        "dead_letter_topic": settings.topic_dlq,
        "history_index": settings.history_index,
        "history_total": client.count(index=settings.history_index)["count"],
        "audit_trail": _verified(client, settings),
    }
    emit_record(summary, as_json=as_json, title="Demo: access history")
    emit(
        _breakdown(client, settings.history_index),
        ["source", "action", "events"],
        as_json=as_json,
        title="Indexed accesses by source and action",
    )
    if not as_json:
        stdout.print(f"Dead letters: `guetteur dlq list` ({settings.topic_dlq}).")
        stdout.print(
            f"Elasticsearch: {settings.elasticsearch_url()}/{settings.history_index}/_search"
            " - stop the stack with `guetteur stack down`."
        )
    if indexed != len(events):
        raise click.ClickException(
            f"only {indexed} of {len(events)} events were indexed; see {log_file}"
        )


def _wait_for_documents(
    client: Elasticsearch,
    index: str,
    ids: set[str],
    timeout: float,
    report: Any,
    worker: WorkerProcess,
) -> int:
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline and worker.alive():
        try:
            client.indices.refresh(index=index)
            found = client.count(index=index, query={"ids": {"values": sorted(ids)}})["count"]
        except NotFoundError:
            found = 0
        report(f"indexed {found}/{len(ids)} events")
        if found >= len(ids):
            return found
        time.sleep(1)
    return found


def _wait_for_dead_letters(
    settings: Settings, before: int, expected: int, worker: WorkerProcess, timeout: float = 30
) -> int:
    deadline = time.monotonic() + timeout
    added = 0
    while time.monotonic() < deadline and worker.alive():
        added = dead_letters.count(settings) - before
        if added >= expected:
            break
        time.sleep(1)
    return added


def _verified(client: Elasticsearch, settings: Settings) -> str:
    """What ``guetteur verify`` says of the history the demo just wrote."""
    report = verify(client, settings, load_checkpoint_keys(settings))
    state = "intact" if report.ok else f"{len(report.findings)} findings"
    return f"{state}: {report.records} chained records, {report.checkpoints} signed record(s)"


def _breakdown(client: Elasticsearch, index: str) -> list[dict[str, Any]]:
    response = client.search(
        index=index,
        size=0,
        aggs={
            "source": {
                "terms": {"field": "event.provider", "size": 20},
                "aggs": {"action": {"terms": {"field": "event.action", "size": 20}}},
            }
        },
    )
    return [
        {"source": source["key"], "action": action["key"], "events": action["doc_count"]}
        for source in response["aggregations"]["source"]["buckets"]
        for action in source["action"]["buckets"]
    ]

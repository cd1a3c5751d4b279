"""``guetteur demo``: the whole path on the local stack, end to end, in one command."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from elasticsearch import Elasticsearch, NotFoundError

from detectors.policy import load_policy
from detectors.registry import all_detectors
from detectors.runner import detect
from streams import dead_letters
from streams.cli.output import emit, emit_record, progress, stderr
from streams.demo.foreign import ForeignRecords, foreign_records, send_syslog
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.elastic import sync_client
from streams.history.checkpoints import load_checkpoint_keys
from streams.history.templates import prepare
from streams.history.verify import verify
from streams.minimise import protected
from streams.producer import publish
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings, StackSettings, load
from streams.stack import LocalStack
from streams.stack.process import tail
from streams.stack.rsyslog import RsyslogService
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess

# Malformed messages a real producer may send: the worker must survive them.
MALFORMED = [b"{not json", b'{"event_id": "demo-bad-1", "timestamp": "2026-11-16T10:00:00"}']


@click.command()
@click.option("--practices", default=3, show_default=True, help="How many practices to simulate.")
@click.option("--days", default=2, show_default=True, help="How many days to simulate.")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for results.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON lines.")
def demo(practices: int, days: int, timeout: float, as_json: bool) -> None:
    """Start the local stack and a worker, replay simulated days with incidents, show the
    access history and the alerts."""
    stack_settings = load(StackSettings)
    # Demo mode: synthetic data, so generated keys are allowed (unless keys are configured).
    settings = load(Settings).model_copy(update={"demo": True})
    policy_file = settings.policy_file or DEMO_POLICY
    simulation = simulate(practices=practices, days=days)
    # The first practice's FHIR server and PACS also log their accesses, in their own forms.
    first_morning = datetime.fromisoformat(simulation.events[0]["timestamp"]).replace(hour=10)
    foreign = foreign_records(first_morning)
    mapped, unmappable = foreign.mapped(load_policy(policy_file).mapping)
    events = simulation.events
    expected = _expected_alerts(settings, [*events, *mapped], policy_file)
    with progress("demo") as report:
        LocalStack(stack_settings).up(report)
        ensure_topics(settings)
        client = sync_client(settings)
        prepare(client, settings)
        letters_before = dead_letters.count(settings)
        log_file = stack_settings.dir / "logs" / "demo-worker.log"
        log_file.unlink(missing_ok=True)
        env = {"GUETTEUR_DEMO": "1", "GUETTEUR_POLICY_FILE": str(policy_file)}
        with WorkerProcess(log_file, env=env) as worker:
            payloads = [json.dumps(event).encode() for event in events] + MALFORMED
            publish(
                settings,
                settings.topic_events,
                payloads,
                on_sent=lambda n: report(f"published {n}/{len(payloads)} messages"),
            )
            atna_via = _send_foreign(settings, stack_settings, foreign)
            ids = {e["event_id"] for e in [*events, *mapped]}
            indexed = _wait_for_documents(
                client, settings.history_index, ids, timeout, report, worker
            )
            refused = len(MALFORMED) + unmappable
            dead_lettered = _wait_for_dead_letters(settings, letters_before, refused, worker)
            alerts = _wait_for_alerts(client, settings, expected, timeout, report, worker)
            paged = _wait_for_pages(stack_settings, alerts, settings, report)
            worker_died = not worker.alive()
    stderr.print(f"worker log: {log_file}")
    if worker_died:
        raise click.ClickException(f"the worker exited early; its log says:\n{tail(log_file, 15)}")
    summary = {
        "published": len(events) + len(MALFORMED),
        "valid": len(events) + len(mapped),
        "malformed": len(MALFORMED),
        "fhir_audit_events": len(foreign.fhir),
        "atna_messages": f"{len(foreign.atna)} ({atna_via})",
        "mapped_events": len(mapped),
        "unmappable": unmappable,
        "indexed_from_this_run": indexed,
        "new_dead_letters": dead_lettered,
        "dead_letter_topic": settings.topic_dlq,
        "history_index": settings.history_index,
        "history_total": client.count(index=settings.history_index)["count"],
        "audit_trail": _verified(client, settings),
        "injected_incidents": len(simulation.labels),
        "alerts": len(alerts),
        "alerts_index": settings.alerts_index,
    }
    emit_record(summary, as_json=as_json, title="Demo: access history and alerts")
    emit(
        _per_rule(alerts),
        ["rule_id", "severity", "alerts", "events"],
        as_json=as_json,
        title="Alerts per rule",
    )
    emit(
        _examples(alerts),
        ["rule_id", "summary"],
        as_json=as_json,
        title="One alert per rule, as an analyst reads it",
    )
    # At 80 columns the summary (which names the actor and the practice) needs the room.
    page_columns = ["severity", "rule_id", "practice_id", "actor_id", "summary"]
    emit(
        paged,
        page_columns if as_json else ["severity", "rule_id", "summary"],
        as_json=as_json,
        title=f"Firing in Alertmanager ({len(paged)} pages)",
    )
    emit(
        _where_to_look(stack_settings, settings),
        ["what", "where"],
        as_json=as_json,
        title="Where to look",
    )
    if indexed != len(ids) or len(alerts) != len(expected):
        raise click.ClickException(
            f"{indexed}/{len(ids)} events indexed, {len(alerts)}/{len(expected)} alerts; "
            f"see {log_file}"
        )


def _send_foreign(settings: Settings, stack: StackSettings, foreign: ForeignRecords) -> str:
    """AuditEvents to the FHIR topic; ATNA messages to the stack's syslog receiver when it
    feeds this worker's ATNA topic (else, e.g. with test topics, to that topic directly)."""
    publish(settings, settings.fhir_topic, foreign.fhir)
    receiver = LocalStack(stack).service("syslog")
    if isinstance(receiver, RsyslogService) and receiver.running_topic() == settings.atna_topic:
        send_syslog(stack.host, stack.syslog_port, foreign.atna)
        return f"syslog {stack.host}:{stack.syslog_port}"
    publish(settings, settings.atna_topic, foreign.atna)
    return f"Kafka {settings.atna_topic}"


def _expected_alerts(settings: Settings, events: list[dict[str, Any]], policy: Path) -> set[str]:
    """The alert ids the offline runner finds in the same events: what the worker must raise."""
    pseudonymizer = load_pseudonymizer(settings, settings.demo_key_file())
    rules = load_policy(policy)
    parsed = protected(events, rules, pseudonymizer)
    return {a.alert_id for a in detect(parsed, all_detectors(rules))}


def _wait_for_alerts(
    client: Elasticsearch,
    settings: Settings,
    expected: set[str],
    timeout: float,
    report: Any,
    worker: WorkerProcess,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline and worker.alive():
        try:
            client.indices.refresh(index=settings.alerts_index)
            hits = client.search(index=settings.alerts_index, size=10_000)["hits"]["hits"]
            found = [hit["_source"] for hit in hits if hit["_id"] in expected]
        except NotFoundError:
            found = []
        report(f"alerts {len(found)}/{len(expected)}")
        if len(found) >= len(expected):
            break
        time.sleep(1)
    return found


def _wait_for_pages(
    stack: StackSettings,
    alerts: list[dict[str, Any]],
    settings: Settings,
    report: Any,
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """The incidents Alertmanager shows as firing (those of the severities that page)."""
    wanted = {a["alert_id"] for a in alerts if a["severity"] in settings.paged_severities}
    matcher = urllib.parse.quote(f'guetteur_app="{settings.app_id}"')
    url = f"{settings.alertmanager(stack)}/api/v2/alerts?filter={matcher}"
    deadline = time.monotonic() + timeout
    firing: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our URL)
                active = json.load(response)
        except OSError:
            active = []
        firing = [a for a in active if a["labels"].get("alert_id") in wanted]
        report(f"pages firing {len(firing)}/{len(wanted)}")
        if len(firing) >= len(wanted):
            break
        time.sleep(1)
    return sorted(
        (
            {
                "severity": a["labels"]["severity"],
                "rule_id": a["labels"]["rule_id"],
                "practice_id": a["labels"].get("practice_id"),
                "actor_id": a["labels"].get("actor_id"),
                "summary": a["annotations"]["summary"],
            }
            for a in firing
        ),
        key=lambda row: (row["severity"], row["rule_id"]),
    )


def _where_to_look(stack: StackSettings, settings: Settings) -> list[dict[str, str]]:
    es = settings.elasticsearch_url(stack)
    return [
        {"what": "alerts (Elasticsearch)", "where": f"{es}/{settings.alerts_index}/_search"},
        {"what": "access history", "where": f"{es}/{settings.history_index}/_search"},
        {"what": "pages firing (Alertmanager)", "where": settings.alertmanager(stack)},
        {
            "what": "metrics (Prometheus)",
            "where": f"{stack.prometheus_url}/graph?g0.expr=guetteur_alerts_total",
        },
        {"what": "dead letters", "where": f"guetteur dlq list ({settings.topic_dlq})"},
        {"what": "stop the stack", "where": "guetteur stack down"},
    ]


def _per_rule(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        row = rows.setdefault(
            alert["rule_id"],
            {"rule_id": alert["rule_id"], "severity": alert["severity"], "alerts": 0, "events": 0},
        )
        row["alerts"] += 1
        row["events"] += alert["event_count"]
    return sorted(rows.values(), key=lambda r: r["rule_id"])


def _examples(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first: dict[str, dict[str, Any]] = {}
    for alert in sorted(alerts, key=lambda a: a["timestamp"]):
        first.setdefault(alert["rule_id"], alert)
    return [{"rule_id": r, "summary": a["summary"]} for r, a in sorted(first.items())]


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

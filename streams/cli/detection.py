"""``guetteur detect`` (the detectors over a file, offline) and ``guetteur simulate``."""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import IO, NamedTuple

import click

from adapters import atna, fhir
from adapters.common import MAX_RECORD_BYTES
from adapters.table import MappingPolicy
from detectors.exceptions import Exceptions
from detectors.models import AccessEvent
from detectors.policy import load_policy
from detectors.registry import all_detectors
from detectors.runner import detect_stream
from streams.audit.safe_output import terminal_cell
from streams.cli.output import emit, progress, stderr
from streams.decode import EventTimeBounds, Reason, Rejected, decode
from streams.demo.simulate import simulate as simulate_days
from streams.exceptions import read_all as read_exceptions
from streams.exceptions import read_file
from streams.minimise import Minimiser
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings, load

# An ATNA message in a file of them (a syslog dump, a folder concatenated), declaration included.
AUDIT_MESSAGE = re.compile(rb"(?:<\?xml[^>]*>\s*)?<AuditMessage\b.*?</AuditMessage>", re.DOTALL)


class Record(NamedTuple):
    label: str  # where it is in the file, for the refusals said on stderr
    raw: bytes | None  # contract JSON; None if the foreign record was refused
    refusal: str | None = None


@click.command()
@click.argument("events", type=click.File("rb"))
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy file (TOML); default GUETTEUR_POLICY_FILE, else the built-in defaults.",
)
@click.option(
    "--exceptions",
    "exceptions_from",
    help="Apply analysts' exceptions: 'kafka' (the live set, as the worker does) or a file of "
    "JSON lines (`guetteur exceptions list --json`). Default: none.",
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["json", "fhir", "atna"]),
    default="json",
    show_default=True,
    help="json: contract events (JSON lines). fhir: FHIR AuditEvents or Bundles (NDJSON, or "
    "one JSON document). atna: DICOM audit messages (XML, one or more). Mapped as the worker "
    "maps them (the policy's [mapping] section).",
)
@click.option(
    "--reorder-window",
    "reorder_seconds",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0, 7 * 24 * 3600),
    help="Seconds by which the file may be out of event-time order (memory grows with it).",
)
def detect(
    events: IO[bytes],
    policy_file: Path | None,
    exceptions_from: str | None,
    input_format: str,
    reorder_seconds: float,
) -> None:
    """Run every detector over EVENTS (JSON lines, - for stdin) in event-time order.

    Alerts go to stdout as JSON lines, the same alerts (same ids) the worker would raise; a
    summary and any refused line go to stderr. Events are protected first as the worker
    protects them (patient ids pseudonymised with its key, GUETTEUR_PSEUDONYM_KEY..., free text
    minimised by the policy's privacy section), so no raw id reaches an alert.
    """
    settings = load(Settings)
    pseudonymizer = load_pseudonymizer(settings, settings.demo_key_file())
    policy = load_policy(policy_file or settings.policy_file)
    minimiser = Minimiser(policy.privacy, policy.export, pseudonymizer)
    exceptions = _exceptions(settings, exceptions_from)
    read = Counter[str]()
    with progress("detect") as report:

        def accepted() -> Iterator[AccessEvent]:
            records = _records(events, input_format, policy.mapping)
            for event in _read(records, report, settings.event_time_bounds()):
                read["events"] += 1
                yield minimiser.protect(event)[0]

        alerts = detect_stream(
            accepted(), all_detectors(policy, exceptions), timedelta(seconds=reorder_seconds)
        )
    for alert in alerts:
        sys.stdout.write(alert.model_dump_json() + "\n")
    sys.stdout.flush()
    counts = Counter(alert.rule_id for alert in alerts)
    rows = [{"rule_id": rule, "alerts": count} for rule, count in sorted(counts.items())]
    stderr.print(f"{read['events']} events, {len(alerts)} alerts")
    if rows:
        emit(rows, ["rule_id", "alerts"], as_json=False, console=stderr)


def _exceptions(settings: Settings, source: str | None) -> Exceptions:
    """The exceptions a backtest applies: the worker's live set, a file, or none (said)."""
    if source is None:
        stderr.print("no exceptions applied (--exceptions kafka applies the live set)")
        return Exceptions()
    exceptions = read_exceptions(settings) if source == "kafka" else read_file(Path(source))
    stderr.print(f"{len(exceptions)} exception(s) applied")
    return exceptions


def _records(source: IO[bytes], input_format: str, table: MappingPolicy) -> Iterator[Record]:
    """Contract JSON lines, as read or as mapped from FHIR or ATNA (refusals said, not lost)."""
    if input_format == "json":
        for number, line in enumerate(source, start=1):
            if line.strip():
                yield Record(f"line {number}", line.rstrip(b"\n"))
        return
    for label, raw in foreign_records(source, input_format):
        translation = (fhir if input_format == "fhir" else atna).translate(raw, table)
        for refusal in translation.refusals:
            yield Record(label, None, refusal.reason)
        for event in translation.events:
            yield Record(f"{label} ({event['event_id']})", json.dumps(event).encode())


def foreign_records(source: IO[bytes], input_format: str) -> Iterator[tuple[str, bytes]]:
    """FHIR: one resource or Bundle per line (NDJSON, as FHIR bulk exports write), or the
    whole file as one JSON document. ATNA: each ``AuditMessage`` in the file. Read as a
    stream: memory holds one record, not the file."""
    if input_format == "atna":
        yield from _audit_messages(source)
        return
    first = source.readline()
    while first and not first.strip():
        first = source.readline()
    if _is_json(first):  # NDJSON
        yield "line 1", first
        for number, line in enumerate(source, start=2):
            if line.strip():
                yield f"line {number}", line
    else:  # one document over several lines (a pretty-printed Bundle)
        yield "document", first + source.read(MAX_RECORD_BYTES + 1)


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


def _audit_messages(source: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    pending = b""
    number = 0
    for line in source:
        pending += line
        while (match := AUDIT_MESSAGE.search(pending)) is not None:
            number += 1
            yield f"message {number}", match.group(0)
            pending = pending[match.end() :]
        if len(pending) > MAX_RECORD_BYTES:  # no end in sight: give it to the mapping to refuse
            number += 1
            yield f"message {number}", pending
            pending = b""
    if pending.strip():
        yield f"message {number + 1}", pending


def _read(
    records: Iterator[Record], report: Callable[[str], None], bounds: EventTimeBounds
) -> Iterator[AccessEvent]:
    refused = 0
    for number, record in enumerate(records, start=1):
        result = (
            decode(record.raw, bounds=bounds)
            if record.raw is not None
            else Rejected(Reason.UNMAPPABLE, record.refusal or "")
        )
        if isinstance(result, Rejected):
            refused += 1
            detail = terminal_cell(result.detail)
            stderr.print(f"{record.label}: refused ({result.reason.value}): {detail}")
            continue
        if number % 10_000 == 0:
            report(f"read {number} records")
        yield result
    if refused:
        stderr.print(f"{refused} record(s) refused; they are not in the results")


@click.command()
@click.option("--practices", default=3, show_default=True, type=click.IntRange(1, 500))
@click.option("--days", default=2, show_default=True, type=click.IntRange(1, 60))
@click.option("--start", default="2026-11-16", show_default=True, help="First day (YYYY-MM-DD).")
@click.option("--seed", default=7, show_default=True)
@click.option("--incidents/--no-incidents", default=True, show_default=True)
@click.option("--out", type=click.File("w"), default="-", help="Events (JSON lines).")
@click.option("--labels", type=click.File("w"), help="Injected incidents (JSON lines).")
def simulate(
    practices: int,
    days: int,
    start: str,
    seed: int,
    incidents: bool,
    out: IO[str],
    labels: IO[str] | None,
) -> None:
    """Write realistic days of accesses at PRACTICES practices, with labelled incidents.

    The benign traffic raises no alert under the demo policy (streams/demo/policy.toml); each
    injected incident is labelled with the rule that must catch it and its event ids.
    """
    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise click.BadParameter(
            f"{start!r} is not a date (YYYY-MM-DD)", param_hint="--start"
        ) from None
    result = simulate_days(practices, days, first, seed, incidents)
    for event in result.events:
        out.write(json.dumps(event) + "\n")
    if labels is not None:
        for label in result.labels:
            labels.write(json.dumps(label.row()) + "\n")
    stderr.print(
        f"{len(result.events)} events at {practices} practices over {days} day(s), "
        f"{len(result.labels)} injected incidents"
    )

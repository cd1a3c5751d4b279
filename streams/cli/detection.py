"""``guetteur detect`` (the detectors over a file, offline) and ``guetteur simulate``."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import IO

import click

from detectors.exceptions import Exceptions
from detectors.models import AccessEvent
from detectors.policy import load_policy
from detectors.registry import all_detectors
from detectors.runner import detect_stream
from streams.audit.safe_output import terminal_cell
from streams.cli.output import emit, progress, stderr
from streams.decode import EventTimeBounds, Rejected, decode
from streams.demo.simulate import simulate as simulate_days
from streams.exceptions import read_all as read_exceptions
from streams.exceptions import read_file
from streams.minimise import Minimiser
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings, load


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
    "--reorder-window",
    "reorder_seconds",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(0, 7 * 24 * 3600),
    help="Seconds by which the file may be out of event-time order (memory grows with it).",
)
def detect(
    events: IO[bytes], policy_file: Path | None, exceptions_from: str | None, reorder_seconds: float
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
            for event in _read(events, report, settings.event_time_bounds()):
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


def _read(
    source: IO[bytes], report: Callable[[str], None], bounds: EventTimeBounds
) -> Iterator[AccessEvent]:
    refused = 0
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        result = decode(line.rstrip(b"\n"), bounds=bounds)
        if isinstance(result, Rejected):
            refused += 1
            detail = terminal_cell(result.detail)
            stderr.print(f"line {number}: refused ({result.reason.value}): {detail}")
            continue
        if number % 10_000 == 0:
            report(f"read {number} lines")
        yield result
    if refused:
        stderr.print(f"{refused} line(s) refused; they are not in the results")


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

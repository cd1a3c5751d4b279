"""``guetteur verify`` and ``guetteur retention``: the audit trail's integrity and its lifetime."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, time
from typing import Any

import click
from elastic_transport import ConnectionError as ElasticsearchUnreachable
from kafka.errors import KafkaError

from streams.cli.output import emit, emit_record, fail, progress
from streams.elastic import sync_client
from streams.history import retention as retention_policy
from streams.history.checkpoints import load_checkpoint_keys
from streams.history.verify import Window
from streams.history.verify import verify as verify_history
from streams.keys import Key
from streams.settings import ConfigError, Settings, load

FINDING_COLUMNS = ["finding", "partition", "seq", "event_id", "index", "detail"]


class Moment(click.ParamType):
    """An ISO 8601 date or date-time; a bare date is a whole day, a time without offset is UTC."""

    name = "DATE[THH:MM[:SS][±HH:MM]]"

    def __init__(self, end_of_day: bool = False):
        self.end_of_day = end_of_day

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not a date (e.g. 2026-11-01 or 2026-11-01T08:00+01:00)")
        if len(value) == 10 and self.end_of_day:
            moment = datetime.combine(moment.date(), time.max)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.option("--from", "start", type=Moment(), help="Only events from this event time on.")
@click.option("--to", "end", type=Moment(end_of_day=True), help="Only events up to this time.")
@click.option(
    "--no-kafka", "no_kafka", is_flag=True, help="Skip checking records against Kafka offsets."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines: each finding, then a summary.")
def verify(start: datetime | None, end: datetime | None, no_kafka: bool, as_json: bool) -> None:
    """Check the access history against its keyed chains, signed checkpoints, their anchors
    outside Elasticsearch, and the Kafka positions it was read from.

    Exit status: 0 intact, 1 tampering found (each finding listed), 2 could not verify (the
    message says why). Without the checkpoint key (GUETTEUR_CHECKPOINT_KEY or _FILE) the
    structure is still checked, and the summary's "not checked" says what was not.
    """
    try:
        settings = load(Settings)
        keys = _checkpoint_keys_if_any(settings)
        client = sync_client(settings)
        with progress("verify", enabled=not as_json) as report_progress:
            report = verify_history(
                client,
                settings,
                keys,
                Window(start, end),
                progress=lambda n: report_progress(f"{n} records checked"),
                kafka=not no_kafka,
            )
    except (ConfigError, ElasticsearchUnreachable, KafkaError, TimeoutError) as exc:
        fail(f"could not verify: {exc}")
        sys.exit(2)
    if report.findings or as_json:
        rows = [finding.row() for finding in report.findings]
        emit(rows, FINDING_COLUMNS, as_json=as_json, title=f"{len(rows)} findings")
    emit_record(report.summary(), as_json=as_json, title=f"verify {settings.history_index}")
    if not report.ok:
        sys.exit(1)


def _checkpoint_keys_if_any(settings: Settings) -> list[Key] | None:
    """The keyring, or None when none is configured (a broken one is still an error)."""
    unconfigured = settings.checkpoint_key is None and settings.checkpoint_key_file is None
    if unconfigured and not settings.demo:
        return None
    return load_checkpoint_keys(settings)


@click.group()
def retention() -> None:
    """Keep the access history for GUETTEUR_RETENTION_MONTHS (6-12, default 12), no longer."""


@retention.command("plan")
@click.option("--json", "as_json", is_flag=True)
def plan(as_json: bool) -> None:
    """Show which monthly indices `retention apply` would remove now."""
    settings = load(Settings)
    months = retention_policy.expired(sync_client(settings), settings, datetime.now(UTC))
    _show(months, settings, as_json, "would remove")


@retention.command("apply")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--now",
    type=Moment(),
    hidden=True,
    help="Pretend it is this moment (tests, and dry reasoning about a future date).",
)
def apply(as_json: bool, now: datetime | None) -> None:
    """Remove monthly indices older than the retention period; record what went, signed."""
    settings = load(Settings)
    key = load_checkpoint_keys(settings)[0]
    with progress("retention", enabled=not as_json) as report:
        months = retention_policy.apply(
            sync_client(settings), settings, key, now or datetime.now(UTC), report
        )
    _show(months, settings, as_json, "removed")


def _show(
    months: list[retention_policy.Expired], settings: Settings, as_json: bool, verb: str
) -> None:
    limit = retention_policy.cutoff(datetime.now(UTC), settings.retention_months)
    title = (
        f"{verb} {len(months)} monthly indices "
        f"({sum(m.documents for m in months)} documents); "
        f"keeping {settings.retention_months} months, events since {limit}"
    )
    emit([m.row() for m in months], ["index", "month", "documents"], as_json=as_json, title=title)

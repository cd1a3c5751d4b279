"""``guetteur redactions``: what minimisation took out of accepted events (never the values)."""

from __future__ import annotations

from typing import Any

import click

from streams import redactions as report
from streams.cli.output import emit, progress
from streams.settings import Settings, load

COLUMNS = ["redacted_at", "source", "source_position", "event_id", "removed"]


@click.command()
@click.option("--source", "sources", multiple=True, help="Only events from this source.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one per event.")
def redactions(sources: tuple[str, ...], as_json: bool) -> None:
    """Events that carried identifiers in free text or attributes the policy does not keep:
    which fields, which kinds, how many. Fix the producer, or the policy's [privacy]."""
    settings = load(Settings)
    with progress("redactions", enabled=not as_json) as say:
        say(f"reading {settings.redaction_topic}")
        records = [r for r in report.read_all(settings) if not sources or r["source"] in sources]
    if as_json:
        emit(records, COLUMNS, as_json=True)
        return
    rows = [{**record, "removed": _removed(record)} for record in records]
    emit(rows, COLUMNS, as_json=False, title=f"{len(rows)} events minimised")


def _removed(record: dict[str, Any]) -> str:
    return "; ".join(f"{r['field']}: {r['kind']} x{r['count']}" for r in record.get("removed", []))

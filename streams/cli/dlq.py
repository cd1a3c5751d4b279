"""``guetteur dlq``: see why messages were refused, and re-submit them."""

from __future__ import annotations

import click

from streams import dead_letters
from streams.cli.output import emit, progress
from streams.settings import Settings, load

NARROW = ["dlq_position", "reason", "source_position", "detail"]  # what fits 80 columns
COLUMNS = [
    "dlq_position",
    "dead_lettered_at",
    "reason",
    "detail",
    "source_topic",
    "source_position",
]


@click.group()
def dlq() -> None:
    """The dead-letter topic (GUETTEUR_TOPIC_DLQ): refused messages, kept verbatim."""


def _select(
    settings: Settings, reasons: tuple[str, ...], positions: tuple[str, ...]
) -> list[dead_letters.DeadLetter]:
    letters = list(dead_letters.read_all(settings))
    if reasons:
        letters = [letter for letter in letters if letter.reason in reasons]
    if positions:
        letters = [letter for letter in letters if letter.position in positions]
    return letters


@dlq.command("list")
@click.option("--reason", "reasons", multiple=True, help="Only this reason (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.option("--wide", is_flag=True, help="Every column (wider than 80).")
def list_(reasons: tuple[str, ...], as_json: bool, wide: bool) -> None:
    """List dead letters with their reason and source position (payloads are not printed)."""
    settings = load(Settings)
    rows = [letter.row() for letter in _select(settings, reasons, ())]
    title = f"{len(rows)} dead letters in {settings.topic_dlq}"
    emit(rows, COLUMNS if as_json or wide else NARROW, as_json=as_json, title=title)


@dlq.command()
@click.option("--reason", "reasons", multiple=True, help="Only this reason (repeatable).")
@click.option("--position", "positions", multiple=True, help="Only this PARTITION:OFFSET.")
@click.option("--json", "as_json", is_flag=True)
def replay(reasons: tuple[str, ...], positions: tuple[str, ...], as_json: bool) -> None:
    """Re-submit dead letters where they were read, as they were (e.g. after a contract fix):
    the events topic, or a FHIR or ATNA record's own topic, to be mapped again.

    Messages that are still invalid come back to the dead-letter topic, marked as replays;
    valid ones are indexed once (documents are keyed by event_id).
    """
    settings = load(Settings)
    letters = _select(settings, reasons, positions)
    with progress("dlq replay") as report:
        sent, gone = dead_letters.replay(
            settings, letters, lambda n: report(f"{n}/{len(letters)} re-submitted")
        )
    rows = [
        {"to_topic": topic, "replayed": count, "unavailable": 0} for topic, count in sent.items()
    ] or [{"to_topic": settings.topic_events, "replayed": 0, "unavailable": 0}]
    rows[0]["unavailable"] = len(gone)
    emit(rows, ["to_topic", "replayed", "unavailable"], as_json=as_json, title="replayed")
    if gone:
        where = ", ".join(letter.position for letter in gone)
        raise click.ClickException(
            f"{len(gone)} letter(s) only reference a message too large to keep whole, and the "
            f"source topic no longer holds it ({where}); ask its producer to send it again"
        )

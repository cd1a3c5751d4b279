"""``guetteur search`` and ``guetteur report``: the auditors' questions, answered from the
history. Every run is recorded (``streams.audit.watch``) under the OS user before it prints
anything; a run that cannot be recorded prints an error instead of data."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
from elasticsearch import Elasticsearch, NotFoundError

from detectors.models import Action, DataCategory
from streams.audit import watch
from streams.audit.keyring import patient_pseudonyms
from streams.audit.query import Filters
from streams.audit.report import (
    COLUMNS,
    REPORTS,
    build_report,
    flags,
    history_row,
    render_html,
    scoped,
    write_csv,
)
from streams.audit.safe_output import terminal_cell
from streams.audit.search import search_history
from streams.cli.history import Moment
from streams.cli.output import emit, progress, stderr
from streams.elastic import sync_client
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings, load

# What fits 80 columns; --wide shows more (CSV and JSON always carry every column).
TABLE = ["time", "actor", "action", "practice", "alerts"]
WIDE = ["time", "actor", "role", "action", "category", "practice", "session", "ticket", "patient"]
WIDE += ["alerts", "event_id"]
FORMATS = click.Choice(["table", "csv", "json"])


def _window(function: Any) -> Any:
    function = click.option(
        "--to", "end", type=Moment(end_of_day=True), help="Until (event time)."
    )(function)
    function = click.option("--from", "start", type=Moment(), help="From (event time).")(function)
    function = click.option(
        "--as",
        "auditor",
        help="On whose behalf (default GUETTEUR_AUDITOR): recorded as a stated purpose beside "
        "your OS user, which is the identity recorded.",
    )(function)
    return function


def _checked_window(start: datetime | None, end: datetime | None) -> None:
    """An inverted range matches nothing: say so instead of answering "0 accesses"."""
    if start is not None and end is not None and start > end:
        raise click.UsageError(
            f"--from {start.isoformat()} is after --to {end.isoformat()}; swap them"
        )


def _hint_unknown_actor(client: Elasticsearch, settings: Settings, actor: str) -> None:
    """No access by this actor: if one differs only by case, name it (ids are exact)."""
    try:
        found = client.search(
            index=settings.history_index,
            size=1,
            query={"term": {"user.id": {"value": actor, "case_insensitive": True}}},
            source_includes=["user.id"],
        )["hits"]["hits"]
    except NotFoundError:
        return
    if found and found[0]["_source"]["user"]["id"] != actor:
        other = found[0]["_source"]["user"]["id"]
        stderr.print(
            f"[yellow]hint:[/] no access by {terminal_cell(actor)!r}; did you mean "
            f"{terminal_cell(other)!r}? (actor ids are case-sensitive)",
            highlight=False,
        )


def _patient_pseudonyms(
    settings: Settings, client: Elasticsearch, raw: str | None
) -> tuple[str, ...]:
    """Every pseudonym the patient may carry in the history (one per key it was made with);
    the raw id goes no further. A keyring that matches none of the history's keys is refused
    (``keyring.KeyMismatchError``, exit 1), so a wrong key never reads as "no access"."""
    if raw is None:
        return ()
    pseudonymizer = load_pseudonymizer(settings, settings.demo_key_file())
    pseudonyms, covered = patient_pseudonyms(client, settings, pseudonymizer, raw)
    warning = covered.warning()
    if warning:
        stderr.print(f"[yellow]warning:[/] {terminal_cell(warning)}", highlight=False)
    return pseudonyms


def _read_raw(raw: str | None) -> str | None:
    """``-`` reads the raw id from stdin, which keeps it out of the shell's history."""
    if raw == "-":
        return sys.stdin.readline().strip()
    return raw


def _output(
    rows: list[dict[str, Any]],
    columns: list[str],
    fmt: str,
    out: IO[str],
    title: str,
    wide: bool = False,
) -> None:
    if fmt == "csv":
        write_csv(rows, columns, out)
    elif fmt == "json":
        for row in rows:
            out.write(json.dumps({column: row.get(column) for column in columns}) + "\n")
    else:
        emit(rows, WIDE if wide else TABLE, as_json=False, title=title)


@click.command()
@click.option("--patient", help="The patient's raw id (- to read it from stdin); never stored.")
@click.option("--actor", help="user.id of the person or service.")
@click.option("--practice", help="The practice id.")
@click.option("--session", help="A session id (remote support, application).")
@click.option("--ticket", help="A support ticket id.")
@click.option(
    "--action",
    "actions",
    multiple=True,
    type=click.Choice([a.value for a in Action], case_sensitive=False),
    help="Only these actions (repeatable).",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    type=click.Choice([c.value for c in DataCategory], case_sensitive=False),
    help="Only these data categories.",
)
@click.option("--source", "sources", multiple=True, help="Only these emitting systems.")
@click.option("--limit", type=click.IntRange(1), help="At most this many rows.")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--wide", is_flag=True, help="More columns in the table (wider than 80).")
@_window
def search(
    patient: str | None,
    actor: str | None,
    practice: str | None,
    session: str | None,
    ticket: str | None,
    actions: tuple[str, ...],
    categories: tuple[str, ...],
    sources: tuple[str, ...],
    limit: int | None,
    fmt: str,
    as_json: bool,
    wide: bool,
    start: datetime | None,
    end: datetime | None,
    auditor: str | None,
) -> None:
    """Search the access history; all matching accesses, oldest first (no 10,000 cap)."""
    _checked_window(start, end)
    settings = load(Settings)
    raw = _read_raw(patient)
    client = sync_client(settings)
    filters = Filters(
        patients=_patient_pseudonyms(settings, client, raw),
        actor=actor,
        practice=practice,
        session=session,
        ticket=ticket,
        action=actions,
        category=categories,
        source=sources,
        start=start,
        end=end,
    )
    with progress("search", enabled=not as_json and fmt == "table") as report:
        rows = []
        for doc in search_history(client, settings, filters, limit):
            rows.append(history_row(doc))
            if len(rows) % 1000 == 0:
                report(f"{len(rows)} accesses")
    looker = watch.cli_looker(settings, auditor)
    index = settings.history_index
    watch.record(settings, watch.audit_event(looker, "search", filters, len(rows), index, raw))
    flagged = flags(client, settings, [row["event_id"] for row in rows])
    for row in rows:
        row["alerts"] = flagged.get(row["event_id"])
    if not rows and actor:
        _hint_unknown_actor(client, settings, actor)
    columns = COLUMNS[: COLUMNS.index("alerts") + 1]
    title = f"{len(rows)} accesses"
    _output(rows, columns, "json" if as_json else fmt, sys.stdout, title, wide)


@click.group()
def report() -> None:
    """Plain-language access reports: a patient's, an actor's, a practice's exports."""


def _report(
    kind: str,
    filters: Filters,
    fmt: str,
    out: Path | None,
    auditor: str | None,
    raw: str | None = None,
    client: Elasticsearch | None = None,
) -> None:
    _checked_window(filters.start, filters.end)
    settings = load(Settings)
    filters = scoped(kind, filters)
    client = client or sync_client(settings)
    with progress("report", enabled=fmt != "json") as say:
        say("reading the history")
        rows = build_report(client, settings, filters)
    if not rows and filters.actor:
        _hint_unknown_actor(client, settings, filters.actor)
    looker = watch.cli_looker(settings, auditor)
    event = watch.audit_event(
        looker, f"{kind} report", filters, len(rows), settings.history_index, raw
    )
    watch.record(settings, event)
    title, period = REPORTS[kind][1], _period(filters)
    if fmt == "html":
        text = render_html(title, period, rows)
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text)
    elif out is not None:
        with out.open("w", newline="") as handle:
            _output(rows, COLUMNS, fmt, handle, title)
    else:
        _output(rows, COLUMNS, fmt, sys.stdout, f"{title}: {len(rows)} accesses ({period})")
    if out is not None:
        stderr.print(f"{len(rows)} accesses written to {out}")


def _period(filters: Filters) -> str:
    start = filters.start.isoformat() if filters.start else "the beginning"
    end = filters.end.isoformat() if filters.end else "now"
    return f"from {start} to {end}"


REPORT_FORMATS = click.Choice(["table", "csv", "json", "html"])


def _report_options(function: Any) -> Any:
    function = click.option("--json", "as_json", is_flag=True, help="Same as --format json.")(
        function
    )
    function = click.option(
        "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file."
    )(function)
    function = click.option(
        "--format", "fmt", type=REPORT_FORMATS, default="table", show_default=True
    )(function)
    return _window(function)


@report.command("patient")
@click.argument("raw_id")
@_report_options
def patient_report(
    raw_id: str,
    fmt: str,
    out: Path | None,
    as_json: bool,
    start: datetime | None,
    end: datetime | None,
    auditor: str | None,
) -> None:
    """Every access to one patient's data (RAW_ID, or - for stdin; pseudonymised first)."""
    settings = load(Settings)
    raw = _read_raw(raw_id)
    client = sync_client(settings)
    filters = Filters(patients=_patient_pseudonyms(settings, client, raw), start=start, end=end)
    _report("patient", filters, "json" if as_json else fmt, out, auditor, raw, client)


@report.command("actor")
@click.argument("actor_id")
@_report_options
def actor_report(
    actor_id: str,
    fmt: str,
    out: Path | None,
    as_json: bool,
    start: datetime | None,
    end: datetime | None,
    auditor: str | None,
) -> None:
    """Everything one person or service touched."""
    filters = Filters(actor=actor_id, start=start, end=end)
    _report("actor", filters, "json" if as_json else fmt, out, auditor)


@report.command("practice")
@click.argument("practice_id")
@_report_options
def practice_report(
    practice_id: str,
    fmt: str,
    out: Path | None,
    as_json: bool,
    start: datetime | None,
    end: datetime | None,
    auditor: str | None,
) -> None:
    """The exports and downloads that left one practice."""
    filters = Filters(practice=practice_id, start=start, end=end)
    _report("practice", filters, "json" if as_json else fmt, out, auditor)

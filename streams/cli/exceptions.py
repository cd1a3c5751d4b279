"""``guetteur exceptions``: analysts' decisions that some findings are expected (add, list,
delete, history). Live in every worker within seconds; recorded with who, when and why."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from detectors.exceptions import DetectionException
from streams import exceptions as live
from streams.cli.history import Moment
from streams.cli.output import emit, emit_record
from streams.elastic import sync_client
from streams.history.templates import prepare
from streams.settings import Settings, load

COLUMNS = ["exception_id", "rule_id", "scope", "expires", "approved_by", "reason"]


@click.group()
def exceptions() -> None:
    """Exceptions to detection rules, as data: scoped, time-limited, with a reason."""


@exceptions.command("add")
@click.option("--rule", "rule_id", required=True, help="The rule id it applies to.")
@click.option("--actor", "actor_id", help="Only this actor.")
@click.option("--practice", "practice_id", help="Only this practice.")
@click.option("--destination", help="Only exports to this destination.")
@click.option("--category", "data_category", help="Only this data category.")
@click.option("--alert", "alert_id", help="Only this incident (a snooze).")
@click.option("--reason", required=True, help="Why these findings are expected.")
@click.option("--expires", required=True, type=Moment(end_of_day=True), help="Until (event time).")
@click.option("--starts", type=Moment(), help="From (event time; default now).")
@click.option("--json", "as_json", is_flag=True)
def add(as_json: bool, expires: datetime, starts: datetime | None, **scope: Any) -> None:
    """Add an exception; you (the OS user) are recorded as who approved it."""
    settings = load(Settings)
    fields = {**scope, "expires": expires.isoformat()}
    if starts is not None:
        fields["starts"] = starts.isoformat()
    try:
        exception = live.new_exception(fields, getpass.getuser())
    except live.ExceptionError as exc:
        raise click.ClickException(f"{exc} (see `guetteur exceptions add --help`)") from None
    client = sync_client(settings)
    prepare(client, settings)
    live.create(client, settings, exception)
    emit_record(_row(exception.model_dump(mode="json")), as_json=as_json, title="exception added")


@exceptions.command("list")
@click.option("--all", "everything", is_flag=True, help="Expired ones too.")
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines (what `detect --exceptions` reads)."
)
def list_(everything: bool, as_json: bool) -> None:
    """The current exceptions (active only, unless --all)."""
    settings = load(Settings)
    now = datetime.now(UTC)
    current = [e for e in live.read_all(settings).by_id.values() if everything or e.active(now)]
    if as_json:
        emit([e.model_dump(mode="json") for e in current], [], as_json=True)
        return
    rows = [_row(e.model_dump(mode="json")) for e in current]
    emit(rows, COLUMNS, as_json=False, title=f"{len(rows)} exceptions")


@exceptions.command("delete")
@click.argument("exception_id")
@click.option("--reason", required=True, help="Why it no longer applies.")
@click.option("--json", "as_json", is_flag=True)
def delete(exception_id: str, reason: str, as_json: bool) -> None:
    """Delete an exception: its findings alert again from now on."""
    _change(live.delete, exception_id, reason, as_json, "exception deleted")


@exceptions.command("expire")
@click.argument("exception_id")
@click.option("--reason", required=True, help="Why it ends now.")
@click.option("--json", "as_json", is_flag=True)
def expire(exception_id: str, reason: str, as_json: bool) -> None:
    """End an exception now: later findings alert again; it stays listed (`list --all`)."""
    _change(live.expire, exception_id, reason, as_json, "exception expired")


def _change(
    change: Callable[..., DetectionException],
    exception_id: str,
    reason: str,
    as_json: bool,
    title: str,
) -> None:
    """A recorded change to one exception, made by the OS user; printed as it now stands."""
    settings = load(Settings)
    client = sync_client(settings)
    prepare(client, settings)
    try:
        changed = change(client, settings, exception_id, getpass.getuser(), reason)
    except live.ExceptionError as exc:
        raise click.ClickException(str(exc)) from None
    emit_record(_row(changed.model_dump(mode="json")), as_json=as_json, title=title)


@exceptions.command("history")
@click.option("--json", "as_json", is_flag=True)
def history(as_json: bool) -> None:
    """Every change to the exceptions: created, expired, deleted; by whom, when, why."""
    settings = load(Settings)
    changes = live.history(sync_client(settings), settings)
    rows = [
        {
            "at": c["@timestamp"],
            "change": c["change"],
            "by": c["by"],
            "exception_id": c["exception"]["exception_id"],
            "why": c["why"],
        }
        for c in changes
    ]
    emit(rows, ["at", "change", "by", "exception_id", "why"], as_json=as_json)


def _row(exception: dict[str, Any]) -> dict[str, Any]:
    scope = ", ".join(
        f"{name.removesuffix('_id')}={exception[name]}"
        for name in ("actor_id", "practice_id", "destination", "data_category", "alert_id")
        if exception.get(name)
    )
    return {**exception, "scope": scope}

"""``guetteur pseudonym``: what an auditor holding the key searches the history for.

A raw id turned into its pseudonym lets its holder search Kibana unrecorded, so the look-up is
itself recorded, like a search (``streams.audit.watch``), before the pseudonyms are printed.
"""

from __future__ import annotations

import sys

import click

from streams.audit import watch
from streams.audit.query import Filters
from streams.cli.output import emit
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings, load


@click.command()
@click.argument("raw_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.option("--as", "auditor", help="On whose behalf (recorded beside your OS user).")
def pseudonym(raw_id: str, as_json: bool, auditor: str | None) -> None:
    """Print the pseudonyms of RAW_ID under the current and previous keys.

    Pass - to read the raw id from standard input (keeps it out of shell history).
    """
    settings = load(Settings)
    pseudonymizer = load_pseudonymizer(
        settings, settings.demo_key_file() if settings.demo else None
    )
    raw = sys.stdin.readline().strip() if raw_id == "-" else raw_id
    keys = [pseudonymizer.current, *pseudonymizer.previous]
    pseudonyms = pseudonymizer.all_pseudonyms(raw)
    looker = watch.cli_looker(settings, auditor)
    lookup = watch.audit_event(looker, "pseudonym look-up", Filters(), len(keys), None, raw)
    watch.record(settings, lookup)
    rows = [
        {"key_id": key.key_id, "current": index == 0, "pseudonym": pseudonyms[index]}
        for index, key in enumerate(keys)
    ]
    if as_json:
        emit(rows, ["key_id", "current", "pseudonym"], as_json=True)
        return
    for row in rows:  # one per line, whole, to copy: a table cut them at 80 columns
        label = "current key" if row["current"] else "older key"
        click.echo(f"{row['pseudonym']}  ({label} {row['key_id']})")

"""``guetteur pseudonym``: what an auditor holding the key searches the history for."""

from __future__ import annotations

import sys

import click

from streams.cli.output import emit
from streams.pseudonym import load_pseudonymizer
from streams.settings import Settings, load


@click.command()
@click.argument("raw_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def pseudonym(raw_id: str, as_json: bool) -> None:
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
    rows = [
        {"key_id": key.key_id, "current": index == 0, "pseudonym": pseudonyms[index]}
        for index, key in enumerate(keys)
    ]
    emit(rows, ["key_id", "current", "pseudonym"], as_json=as_json)

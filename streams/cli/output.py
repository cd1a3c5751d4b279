"""Output for people and machines: rich tables by default, JSON lines with ``--json``.

Progress and diagnostics go to stderr so stdout stays clean for pipes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.audit.safe_output import terminal_cell
from streams.stack.service import Progress

stdout = Console()
stderr = Console(stderr=True)


def emit(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    title: str = "",
    console: Console | None = None,
) -> None:
    if as_json:
        for row in rows:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
        sys.stdout.flush()
        return
    target = console or stdout
    table = Table(title=title or None, title_justify="left")
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(row[n]) for row in cells)]) for n, column in enumerate(columns)
    ]
    whole = [_whole(column) and width <= 40 for column, width in zip(columns, widths, strict=True)]
    # Times and ids are read or copied whole: kept on one line, uncut, while they fit beside
    # a few characters for each other column (which wrap around them).
    needed = sum(w for w, keep in zip(widths, whole, strict=True) if keep)
    needed += 8 * whole.count(False) + 3 * len(columns) + 1
    fits = needed <= target.width
    for column, width, keep in zip(columns, widths, whole, strict=True):
        header = column.replace("_", " ")
        if keep and fits:
            table.add_column(header, no_wrap=True, min_width=width)
        else:
            table.add_column(header, overflow="fold")
    for row_cells in cells:
        table.add_row(*row_cells)
    target.print(table)


WHOLE = ("time", "at", "id", "position", "expires", "created", "revoked", "pseudonym")


def _whole(column: str) -> bool:
    return column in WHOLE or column.endswith(("_at", "_id", "_position", "time"))


def emit_record(record: dict[str, Any], *, as_json: bool, title: str = "") -> None:
    """One result: a JSON line for machines, a two-column key/value table for people."""
    if as_json:
        emit([record], list(record), as_json=True)
        return
    rows = [{"field": key.replace("_", " "), "value": value} for key, value in record.items()]
    emit(rows, ["field", "value"], as_json=False, title=title)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return terminal_cell(str(value))


@contextmanager
def progress(label: str, *, enabled: bool = True) -> Iterator[Progress]:
    """A live status line on a terminal; plain timestamped lines otherwise (CI logs)."""
    if not enabled:
        yield lambda _message: None
        return
    if stderr.is_terminal:
        with stderr.status(label) as status:
            yield lambda message: status.update(f"{label}: {message}")
        return
    last: list[str] = []

    def report(message: str) -> None:
        # A non-terminal gets each distinct step once, not a line per poll second.
        step = message.split(" (", 1)[0]
        if not last or last[-1] != step:
            last.append(step)
            stderr.print(f"{label}: {message}", highlight=False)

    yield report


def fail(message: str) -> None:
    """One line, however long: a message is copied and grepped, not read in a narrow box."""
    stderr.print(f"[bold red]error:[/] {terminal_cell(message)}", highlight=False, soft_wrap=True)

"""Values from the history, made harmless for where an auditor opens them.

Every field of an access event can be chosen by whoever produced it, so a report must not turn
a field into something the reader's tools act on:
- a spreadsheet evaluates a CSV cell that starts with ``=``, ``+``, ``-`` or ``@`` (and tab or
  carriage return, which some strip first) as a formula: ``=HYPERLINK(...)`` leaks data on a
  click (OWASP "CSV injection"); such a cell gets a leading ``'``, which makes it text;
- a terminal acts on control characters (ANSI escapes can rewrite what is on screen), and rich
  reads ``[...]`` as markup: table cells show control characters as ``\\xNN`` and markup as text;
- HTML is escaped where the page is built (``report.render_html``); JSON is safe by encoding.
"""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def csv_cell(value: Any) -> Any:
    """A string a spreadsheet would evaluate becomes text; numbers and the rest pass as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: csv_cell(value) for key, value in row.items()}


def terminal_cell(text: str) -> str:
    """Shown, never obeyed: control characters made visible, rich markup escaped."""
    visible = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return escape(visible)

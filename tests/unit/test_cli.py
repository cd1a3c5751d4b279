from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.cli.main import cli


def test_status_prints_json_lines_for_machines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GUETTEUR_STACK_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["stack", "status", "--json"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert {row["name"] for row in rows} == {"kafka", "elasticsearch", "alertmanager", "prometheus"}
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

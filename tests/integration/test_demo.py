"""The README's demo command runs end to end and reports what it indexed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streams.settings import Settings

pytestmark = pytest.mark.integration


def test_demo_indexes_every_valid_event_and_says_so(isolated: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "demo", "--practices", "2", "--json"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summary = lines[0]
    assert summary["valid"] > 100
    assert summary["indexed_from_this_run"] == summary["valid"]
    assert summary["new_dead_letters"] == summary["malformed"] == 2
    assert summary["history_index"] == isolated.history_index
    breakdown = lines[1:]
    assert sum(row["events"] for row in breakdown) == summary["history_total"] == summary["valid"]

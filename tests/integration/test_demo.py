"""The README's demo command runs end to end: history, dead letters, an alert per rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from detectors.registry import RULE_IDS
from streams.settings import Settings, StackSettings
from streams.stack import LocalStack
from streams.stack.prometheus import registered_workers

pytestmark = pytest.mark.integration


def test_demo_indexes_every_event_and_shows_an_alert_per_rule(isolated: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "demo", "--practices", "2", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "GUETTEUR_PAGE_SEVERITIES": "high,critical"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    summary, rest = lines[0], lines[1:]
    assert summary["valid"] > 400
    assert summary["indexed_from_this_run"] == summary["valid"] == summary["history_total"]
    assert summary["malformed"] == 2 and summary["unmappable"] == 1
    assert summary["new_dead_letters"] == 3  # the FHIR record naming nobody who asked, too
    # The first practice's FHIR server and PACS: 3 AuditEvents, 1 ATNA message, 3 accesses.
    assert (summary["fhir_audit_events"], summary["mapped_events"]) == (3, 3)
    assert summary["atna_messages"] == f"1 (Kafka {isolated.atna_topic})"  # test topics
    assert summary["history_index"] == isolated.history_index
    assert summary["audit_trail"].startswith("intact")
    per_rule = [line for line in rest if "alerts" in line]
    examples = [line for line in rest if set(line) == {"rule_id", "summary"}]
    paged = [line for line in rest if "severity" in line and "summary" in line]
    where = {line["what"]: line["where"] for line in rest if "what" in line}
    assert sorted(row["rule_id"] for row in per_rule) == sorted(RULE_IDS)
    assert sum(row["alerts"] for row in per_rule) == summary["alerts"] >= len(RULE_IDS)
    assert sorted(row["rule_id"] for row in examples) == sorted(RULE_IDS)
    assert all(len(row["summary"]) > 40 for row in examples)
    # Every high and critical incident pages on-call; the demo shows them and where to look.
    assert {row["severity"] for row in paged} == {"high", "critical"}
    assert len(paged) == sum(r["alerts"] for r in per_rule if r["severity"] in {"high", "critical"})
    assert where["pages firing (Alertmanager)"] == "http://127.0.0.1:9093"
    assert where["metrics (Prometheus)"].startswith("http://127.0.0.1:9090/")
    # Its worker stopped, and unregistered from Prometheus: no "worker down" alert left firing.
    targets = LocalStack(StackSettings()).prometheus.targets_dir
    assert [w for w in registered_workers(targets) if w.app_id == isolated.app_id] == []
    assert not (targets / "default.json").exists()  # the static target that fired for ever

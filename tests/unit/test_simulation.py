"""The simulator's promise: benign days raise nothing, each injected incident is caught."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.alerts import Alert
from detectors.models import AccessEvent
from detectors.policy import load_policy
from detectors.registry import RULE_IDS, all_detectors
from detectors.runner import detect
from streams.demo.simulate import DEMO_POLICY, simulate


def _alerts(events: list[dict[str, object]]) -> list[Alert]:
    parsed = [AccessEvent.model_validate_json(json.dumps(e)) for e in events]
    return detect(parsed, all_detectors(load_policy(DEMO_POLICY)))


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_every_incident_is_alerted_and_nothing_else(seed: int) -> None:
    day = simulate(practices=4, days=2, seed=seed)
    assert sorted(label.rule_id for label in day.labels) == sorted(RULE_IDS)
    alerts = _alerts(day.events)
    incident_events = {i for label in day.labels for i in label.event_ids}
    for label in day.labels:
        caught = [
            a
            for a in alerts
            if a.rule_id == label.rule_id and set(a.event_ids) & set(label.event_ids)
        ]
        assert caught, f"{label.rule_id} missed: {label.description}"
    benign = [a.summary for a in alerts if not set(a.event_ids) <= incident_events]
    assert benign == []


def test_benign_days_raise_no_alert() -> None:
    assert _alerts(simulate(practices=5, days=3, seed=3, incidents=False).events) == []


def test_the_simulation_is_deterministic() -> None:
    assert simulate(seed=5).events == simulate(seed=5).events
    assert simulate(seed=5).events != simulate(seed=6).events


def test_detect_command_prints_alerts_without_raw_patient_ids(tmp_path: Path) -> None:
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    cli = [sys.executable, "-m", "streams.cli.main"]
    env = {"PATH": "/usr/bin:/bin", "GUETTEUR_PSEUDONYM_KEY": "k" * 40}
    subprocess.run(
        [*cli, "simulate", "--out", str(events), "--labels", str(labels)], check=True, env=env
    )
    result = subprocess.run(
        [*cli, "detect", str(events), "--policy", str(DEMO_POLICY)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(a["rule_id"] for a in alerts) == sorted(RULE_IDS)
    assert "10 alerts" in result.stderr
    raw_ids = {json.loads(line).get("patient_id") for line in events.read_text().splitlines()}
    assert not any(raw and raw in result.stdout for raw in raw_ids)

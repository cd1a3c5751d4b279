"""Prometheus rules, their unit tests and the Alertmanager configurations, checked by the
servers' own tools (installed by the project's set-up: a missing tool fails, never skips)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import streams.metrics  # noqa: F401  (registers every metric)
from streams.settings import StackSettings
from streams.stack.alertmanager import AlertmanagerService
from streams.stack.prometheus import PrometheusService, register_worker, registered_workers

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "prometheus" / "rules" / "guetteur.yml"


def _run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS: 9 rules found" in _run("promtool", "check", "rules", str(RULES))


def test_promtool_runs_the_rules_unit_tests() -> None:
    tests = ROOT / "dashboards" / "prometheus" / "tests" / "guetteur_test.yml"
    assert "SUCCESS" in _run("promtool", "test", "rules", str(tests))


def test_every_rule_has_a_test() -> None:
    rules = yaml.safe_load(RULES.read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = (ROOT / "dashboards" / "prometheus" / "tests" / "guetteur_test.yml").read_text()
    assert {name for name in names if f"alertname: {name}" not in tests} == set()


def test_the_example_alertmanager_config_passes_amtool() -> None:
    config = ROOT / "dashboards" / "alertmanager" / "alertmanager.yml"
    out = _run("amtool", "check-config", str(config))
    assert "SUCCESS" in out and "3 receivers" in out


def test_the_compose_prometheus_config_passes_promtool() -> None:
    assert "SUCCESS" in _run("promtool", "check", "config", "dashboards/prometheus/prometheus.yml")


@pytest.mark.parametrize("service", [AlertmanagerService, PrometheusService])
def test_the_local_stack_configs_pass_their_tools(
    tmp_path: Path, service: type[AlertmanagerService] | type[PrometheusService]
) -> None:
    daemon = service(StackSettings(dir=tmp_path))
    daemon.config_dir.mkdir(parents=True)
    daemon.write_config()
    if isinstance(daemon, AlertmanagerService):
        _run("amtool", "check-config", str(daemon.config_dir / "alertmanager.yml"))
    else:
        _run("promtool", "check", "config", str(daemon.config_dir / "prometheus.yml"))


SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}


def defined_metrics() -> set[str]:
    """Every series name the worker can expose (counters get _total, histograms _bucket...)."""
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("guetteur_")
        for suffix in SUFFIXES[family.type]
    }


def metric_names(text: str) -> set[str]:
    return set(re.findall(r"\bguetteur_[a-z_]+\b", text))


def test_rules_use_only_metrics_the_worker_defines() -> None:
    rules = yaml.safe_load(RULES.read_text())
    exprs = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    assert metric_names(exprs) - defined_metrics() == set()


def test_metrics_are_listed_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    families = {c.name for c in REGISTRY.collect() if c.name.startswith("guetteur_")}
    missing = {name for name in families if name not in readme and f"{name}_total" not in readme}
    assert missing == set(), json.dumps(sorted(missing))


def test_a_worker_registers_on_a_freshly_configured_stack(tmp_path: Path) -> None:
    """CI on a fresh clone found no worker in `stack status`: nothing created the targets
    directory on a new stack, so every worker took the stack for absent and never registered."""
    prometheus = PrometheusService(StackSettings(dir=tmp_path))
    assert register_worker(prometheus.targets_dir, "127.0.0.1:6066", "app") is None  # no stack
    prometheus.config_dir.mkdir(parents=True)
    prometheus.write_config()
    target = register_worker(prometheus.targets_dir, "127.0.0.1:6066", "app")
    assert target is not None and target.is_file()
    [worker] = registered_workers(prometheus.targets_dir)
    assert (worker.address, worker.app_id, worker.running) == ("127.0.0.1:6066", "app", True)

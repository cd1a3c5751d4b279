"""Prometheus for the local stack: scrapes the workers, evaluates the project's alert rules
(``dashboards/prometheus/rules``) and sends what fires to the local Alertmanager.

Workers are found through file service discovery: ``prometheus/targets/*.json``. The stack
writes the default worker's (port 6066); anything else that runs a worker (a test, a second
worker) adds its own file with ``add_scrape_target``.
"""

from __future__ import annotations

import json
from pathlib import Path

from streams.settings import PROJECT_ROOT
from streams.stack.daemon import DaemonService, write_json

RULES = PROJECT_ROOT / "dashboards" / "prometheus" / "rules"


class PrometheusService(DaemonService):
    name = "prometheus"
    binary = "prometheus"
    package = "prometheus"
    port_setting = "GUETTEUR_STACK_PROMETHEUS_PORT"

    @property
    def port(self) -> int:
        return self.settings.prometheus_port

    @property
    def targets_dir(self) -> Path:
        return self.config_dir / "targets"

    def write_config(self) -> None:
        s = self.settings
        config = {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"{s.host}:{s.alertmanager_port}"]}]}
                ]
            },
            "rule_files": [str(RULES / "*.yml")],
            "scrape_configs": [
                {
                    "job_name": "guetteur-worker",
                    "metrics_path": "/metrics",
                    "file_sd_configs": [
                        {"files": [str(self.targets_dir / "*.json")], "refresh_interval": "5s"}
                    ],
                },
                {
                    "job_name": "prometheus",
                    "static_configs": [{"targets": [f"{s.host}:{s.prometheus_port}"]}],
                },
            ],
        }
        # JSON is YAML: no YAML writer needed.
        (self.config_dir / "prometheus.yml").write_text(json.dumps(config, indent=2) + "\n")
        add_scrape_target(self.targets_dir, "default", f"{s.host}:6066")

    def arguments(self) -> list[str]:
        return [
            f"--config.file={self.config_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={self.settings.host}:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=7d",
        ]


def add_scrape_target(targets_dir: Path, name: str, address: str, **labels: str) -> Path:
    """Have Prometheus scrape a worker at ``address`` (picked up within seconds)."""
    path = targets_dir / f"{name}.json"
    write_json(path, [{"targets": [address], "labels": labels}])
    return path

"""Prometheus for the local stack: scrapes the workers, evaluates the project's alert rules
(``dashboards/prometheus/rules``) and sends what fires to the local Alertmanager.

Workers are found through file service discovery: ``prometheus/targets/*.json``. A worker
running on the local stack registers itself (``register_worker``: ``worker-<pid>.json``) and
removes its file when it stops, so a demo that ends leaves no "worker down" alert behind, while
a worker that dies without stopping leaves its file, and ``GuetteurWorkerDown`` fires, as it
should. ``guetteur stack status`` lists the registered workers. Tests add their own targets
with ``add_scrape_target``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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
        # Workers take this directory for the sign that a local stack is there to register with.
        self.targets_dir.mkdir(exist_ok=True)
        # Earlier versions scraped port 6066 whether a worker ran or not: the alert fired for ever.
        (self.targets_dir / "default.json").unlink(missing_ok=True)

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


def register_worker(targets_dir: Path, address: str, app_id: str) -> Path | None:
    """A worker on the local stack, for Prometheus to scrape; None without a local stack."""
    if not targets_dir.is_dir():
        return None
    (targets_dir / "default.json").unlink(missing_ok=True)  # a stack configured before this
    return add_scrape_target(targets_dir, f"worker-{os.getpid()}", address, guetteur_app=app_id)


@dataclass(frozen=True)
class RegisteredWorker:
    pid: int
    address: str
    app_id: str
    file: Path  # remove it once a dead worker is dealt with: its alert then resolves

    @property
    def running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def registered_workers(targets_dir: Path) -> list[RegisteredWorker]:
    workers = []
    for path in sorted(targets_dir.glob("worker-*.json")):
        try:
            [target] = json.loads(path.read_text())
            pid = int(path.stem.removeprefix("worker-"))
        except (ValueError, OSError):
            continue
        labels = target.get("labels", {})
        address, app_id = target["targets"][0], labels.get("guetteur_app", "")
        workers.append(RegisteredWorker(pid, address, app_id, path))
    return workers

"""Alertmanager for the local stack: receives Guetteur's pages (and Prometheus's alerts).

Locally nothing should ring anybody's phone, so the receivers are empty: alerts are visible in
Alertmanager's UI and API (http://127.0.0.1:9093), routed per severity exactly as in the example
configuration users start from (``dashboards/alertmanager/alertmanager.yml``).
"""

from __future__ import annotations

import json

from streams.stack.daemon import DaemonService

ROUTES = {
    "route": {
        "receiver": "log-only",
        "group_by": ["alertname", "rule_id", "practice_id"],
        "group_wait": "5s",
        "group_interval": "30s",
        "repeat_interval": "4h",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "log-only", "group_wait": "0s"},
            {"matchers": ['severity="high"'], "receiver": "log-only"},
            {"matchers": ['severity=~"medium|low"'], "receiver": "log-only"},
        ],
    },
    "receivers": [{"name": "log-only"}],
}


class AlertmanagerService(DaemonService):
    name = "alertmanager"
    binary = "prometheus-alertmanager"
    package = "prometheus-alertmanager"
    port_setting = "GUETTEUR_STACK_ALERTMANAGER_PORT"

    @property
    def port(self) -> int:
        return self.settings.alertmanager_port

    def write_config(self) -> None:
        (self.config_dir / "alertmanager.yml").write_text(json.dumps(ROUTES, indent=2) + "\n")

    def arguments(self) -> list[str]:
        return [
            f"--config.file={self.config_dir / 'alertmanager.yml'}",
            f"--storage.path={self.data_dir}",
            f"--web.listen-address={self.settings.host}:{self.port}",
            "--cluster.listen-address=",  # a single local node: no gossip port
        ]

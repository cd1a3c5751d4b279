"""The bundled local stack: real Kafka, Elasticsearch, Alertmanager and Prometheus processes,
plus rsyslog as the syslog (IHE ATNA) receiver in front of Kafka, started by the project itself.

``LocalStack`` is what ``guetteur stack up|down|status|logs``, the demo and the integration tests
use. Kafka and Elasticsearch are fetched once (Maven Central) into a git-ignored cache; the
monitoring pair and rsyslog come from Debian packages.
"""

from __future__ import annotations

from streams.settings import StackSettings
from streams.stack.alertmanager import AlertmanagerService
from streams.stack.elasticsearch import ElasticsearchService
from streams.stack.kafka import KafkaService
from streams.stack.prometheus import PrometheusService
from streams.stack.rsyslog import RsyslogService
from streams.stack.service import (
    Progress,
    Service,
    ServiceStatus,
    StackError,
    check_ports_free,
    wait_ready,
)

__all__ = ["LocalStack", "ServiceStatus", "StackError"]


def _quiet(_: str) -> None:
    return None


class LocalStack:
    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.kafka = KafkaService(settings)
        self.syslog = RsyslogService(settings)
        self.elasticsearch = ElasticsearchService(settings)
        self.alertmanager = AlertmanagerService(settings)
        self.prometheus = PrometheusService(settings)
        # Start order; stop runs in reverse.
        self.services: list[Service] = [
            self.kafka,
            self.elasticsearch,
            self.alertmanager,
            self.prometheus,
            # Writes to Kafka: starts once Kafka had the most time, stops first (while Kafka can
            # still take what it holds).
            self.syslog,
        ]

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        names = ", ".join(s.name for s in self.services)
        raise StackError(name, f"no such service in the stack (known: {names})")

    def up(self, progress: Progress = _quiet) -> list[str]:
        """Install what is missing, start what is not running, wait until all answer.

        Returns the names of the services this call started (the others were already up), so
        a caller such as the test suite can stop exactly what it started.
        """
        for service in self.services:
            service.install(progress)
        to_start = [service for service in self.services if not service.running()]
        for service in to_start:
            check_ports_free(service, self.settings.host)
        started: list[str] = []
        for service in to_start:
            progress(f"starting {service.name}")
            service.start()
            started.append(service.name)
        for service in self.services:
            wait_ready(service, self.settings.start_timeout, progress)
        return started

    def down(self, names: list[str] | None = None, progress: Progress = _quiet) -> list[str]:
        """Stop the services we started (by recorded pid); returns the ones that were running."""
        stopped: list[str] = []
        for service in reversed(self.services):
            if names is not None and service.name not in names:
                continue
            progress(f"stopping {service.name}")
            if service.stop():
                stopped.append(service.name)
        return stopped

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]

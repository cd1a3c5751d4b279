"""docker-compose.yml cannot run here (no Docker engine), so it is checked as data and by the
Compose CLI's own validator, against the project's defaults."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import Settings, StackSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {
    "ELASTIC_PASSWORD": "test-only",
    "KIBANA_PASSWORD": "test-only",
    "KIBANA_ENCRYPTION_KEY": "x" * 32,
    "GRAFANA_ADMIN_PASSWORD": "test-only",
    "GUETTEUR_PSEUDONYM_KEY": "p" * 32,
    "GUETTEUR_CHECKPOINT_KEY": "c" * 32,
}
LONG_RUNNING = {
    "kafka",
    "elasticsearch",
    "kibana",
    "prometheus",
    "alertmanager",
    "grafana",
    "worker",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _host_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(mapping).rsplit(":", 2)[-2]) for mapping in service.get("ports", [])}


def test_the_whole_stack_is_described(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= LONG_RUNNING


def test_host_ports_match_the_project_defaults(compose: dict[str, Any]) -> None:
    services = compose["services"]
    stack, settings = StackSettings(), Settings()
    assert _host_ports(services["kafka"]) == {stack.kafka_port}
    assert _host_ports(services["elasticsearch"]) == {stack.es_port}
    assert _host_ports(services["worker"]) == {settings.web_port}
    assert _host_ports(services["alertmanager"]) == {9093}
    assert services["worker"]["environment"]["GUETTEUR_WEB_PORT"] == str(settings.web_port)


def test_versions_match_the_local_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    stack = StackSettings()
    from streams.stack import LocalStack

    local = LocalStack(stack)
    assert services["kafka"]["image"].endswith(f":{local.kafka.version}")
    assert services["elasticsearch"]["image"].endswith(f":{local.elasticsearch.version}")
    assert services["kibana"]["image"].endswith(f":{local.elasticsearch.version}")


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    missing = [name for name in LONG_RUNNING if "healthcheck" not in compose["services"][name]]
    assert missing == []


def test_stateful_services_keep_data_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name in ("kafka", "elasticsearch", "prometheus", "alertmanager", "grafana", "worker"):
        volumes = {str(v).split(":", 1)[0] for v in compose["services"][name]["volumes"]}
        assert volumes & declared, f"{name} keeps no data in a named volume"


def test_elasticsearch_security_is_spelled_out_and_secrets_are_not_hard_coded(
    compose: dict[str, Any],
) -> None:
    env = compose["services"]["elasticsearch"]["environment"]
    assert env["xpack.security.enabled"] == "true"
    assert {"xpack.security.http.ssl.enabled", "xpack.security.transport.ssl.enabled"} <= set(env)
    text = COMPOSE.read_text()
    for secret in SECRETS:
        assert f"${{{secret}:?" in text, f"{secret} must come from the environment, required"


def test_mounted_config_files_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    assert (ROOT / "Dockerfile").is_file()


def test_compose_cli_validates_the_file() -> None:
    command = _compose_command()
    assert command, "no Compose CLI: run `make system-deps` (installs Debian's docker-compose)"
    env = {**os.environ, **SECRETS}
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in SECRETS},
        check=False,
    )
    assert missing.returncode != 0 and "ELASTIC_PASSWORD" in missing.stderr


def _compose_command() -> list[str]:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    found = shutil.which("docker-compose")
    return [found] if found else []

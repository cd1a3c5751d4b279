"""Stack pieces that need no running server: config generation, pids, toolchain errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.settings import StackSettings
from streams.stack import LocalStack, StackError, process, toolchain
from streams.stack.kafka import POM as KAFKA_POM
from tests.helpers import free_ports


def _settings(tmp_path: Path) -> StackSettings:
    return StackSettings(dir=tmp_path, kafka_port=19092, kafka_controller_port=19093, es_port=19200)


def test_versions_come_from_the_poms() -> None:
    assert toolchain.pom_property(KAFKA_POM, "kafka.version").startswith("3.9.")
    stack = LocalStack(StackSettings())
    assert stack.elasticsearch.version.startswith("8.")


def test_kafka_config_uses_configured_ports(tmp_path: Path) -> None:
    kafka = LocalStack(_settings(tmp_path)).kafka
    kafka._write_config()
    properties = kafka.properties_file.read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in properties
    assert "auto.create.topics.enable=false" in properties
    assert f"log.dirs={tmp_path / 'data' / 'kafka'}" in properties


def test_status_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    statuses = LocalStack(_settings(tmp_path)).status()
    assert [s.name for s in statuses] == [
        "kafka",
        "elasticsearch",
        "alertmanager",
        "prometheus",
        "syslog",
    ]
    assert not any(s.running for s in statuses)
    assert all(s.pid is None for s in statuses)


def test_down_on_a_stopped_stack_stops_nothing(tmp_path: Path) -> None:
    assert LocalStack(_settings(tmp_path)).down() == []


def test_pid_checks_need_the_marker_and_terminate_stops(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        # Popen returns once the child forked; its command line is ours only after exec.
        deadline = time.monotonic() + 10
        while marker not in process.command_line(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.is_ours(child.pid, marker)
        assert not process.is_ours(child.pid, "somebody-else")
        assert process.terminate(child.pid, timeout=10)
        child.wait(5)
        assert not process.is_ours(child.pid, marker)
    finally:
        child.kill()


def test_stale_pid_file_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text("999999999\n")
    assert not process.is_ours(process.read_pid(pid_file), "anything")
    pid_file.write_text("garbage")
    assert process.read_pid(pid_file) is None


def test_missing_java_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="apt-get install openjdk-17-jre-headless"):
        toolchain.java_home()


def test_missing_maven_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="apt-get install maven"):
        toolchain.maven()


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "java"
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="Java 11"):
        toolchain.java_home()


def test_stack_error_carries_log_file_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    log.write_text("line 1\nFATAL address already in use\n")
    error = StackError("kafka", "not ready", log, process.tail(log, 5))
    assert "kafka: not ready" in str(error)
    assert str(log) in str(error)
    assert "FATAL address already in use" in str(error)


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        kafka_port, controller_port, transport_port = free_ports(3)
        settings = StackSettings(
            dir=tmp_path,
            es_port=port,
            es_transport_port=transport_port,
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
        )
        stack = LocalStack(settings)
        for service in (stack.kafka, stack.elasticsearch):  # pretend installed: ports first
            (service.home / ".complete").parent.mkdir(parents=True, exist_ok=True)
            (service.home / ".complete").write_text("test")
        with pytest.raises(StackError, match=f"port {port} .* GUETTEUR_STACK_ES_PORT"):
            stack.up()
        assert not stack.kafka.running()

"""The syslog receiver's rsyslog.conf, checked by rsyslogd itself (``-N1``: parse and validate,
load the modules, start nothing), so a typo in a parameter fails here and not at ``stack up``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from streams.settings import StackSettings
from streams.stack.rsyslog import RsyslogService, find_rsyslogd, omkafka_module, rsyslog_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER_CONFIG = ROOT / "docker" / "rsyslog" / "rsyslog.conf"


def _rsyslogd() -> str:
    found = find_rsyslogd()
    assert found, "no rsyslogd: run `make system-deps` (installs rsyslog and rsyslog-kafka)"
    assert omkafka_module(), "no omkafka: run `make system-deps` (installs rsyslog-kafka)"
    return found


def _validate(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_rsyslogd(), "-N1", "-f", str(config)], capture_output=True, text=True, check=False
    )


@pytest.fixture
def service(tmp_path: Path) -> RsyslogService:
    settings = StackSettings(
        dir=tmp_path, kafka_port=19092, syslog_port=15514, syslog_topic="test-atna"
    )
    return RsyslogService(settings)


def test_rsyslogd_accepts_the_generated_config(service: RsyslogService) -> None:
    service.write_config()
    result = _validate(service.config_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "End of config validation run" in result.stdout + result.stderr


def test_the_config_carries_the_settings(service: RsyslogService, tmp_path: Path) -> None:
    service.write_config()
    text = service.config_file.read_text()
    assert 'address="127.0.0.1"' in text and 'port="15514"' in text
    assert 'broker=["127.0.0.1:19092"]' in text and 'topic="test-atna"' in text
    assert f'workDirectory="{tmp_path / "data" / "syslog"}"' in text
    assert 'string="%msg%"' in text
    assert 'parser.escapeControlCharactersOnReceive="off"' in text
    assert 'action.resumeRetryCount="-1"' in text
    # Inputs take maxMessageSize when they are created: the global must come first.
    assert text.index("maxMessageSize") < text.index('type="imtcp"')
    # Our own instance: no local log socket, no kernel log.
    assert "imuxsock" not in text and "imklog" not in text


def test_rsyslogd_rejects_an_unknown_parameter(tmp_path: Path) -> None:
    """The check has teeth: rsyslogd -N1 refuses what it does not know."""
    config = rsyslog_config(
        address="127.0.0.1",
        port=15514,
        brokers=["127.0.0.1:19092"],
        topic="test-atna",
        work_dir=tmp_path,
        internal_log=tmp_path / "syslog.log",
    ).replace('maxFrameSize="', 'maxFramSize="')
    path = tmp_path / "broken.conf"
    path.write_text(config)
    result = _validate(path)
    assert result.returncode != 0
    assert "maxFramSize" in result.stdout + result.stderr


def test_the_compose_config_passes_rsyslogd(tmp_path: Path) -> None:
    """docker/rsyslog/rsyslog.conf, its container work directory swapped for one that exists."""
    text = DOCKER_CONFIG.read_text().replace("/var/spool/rsyslog", str(tmp_path))
    path = tmp_path / "rsyslog.conf"
    path.write_text(text)
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr

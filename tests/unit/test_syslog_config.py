"""The syslog receiver's rsyslog.conf, checked by rsyslogd itself (``-N1``: parse and validate,
load the modules, start nothing), so a typo in a parameter fails here and not at ``stack up``.

``-N1`` checks parameter names, not what TLS needs at run time: it accepts certificate files that
do not exist and an unknown stream driver name. So the generated CA and certificates are checked
here by a mutual TLS handshake (Python's ``ssl``), the receiver's own use of them in
tests/integration/test_syslog_receiver.py."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streams.settings import StackSettings
from streams.stack import StackError
from streams.stack.pki import LocalPki
from streams.stack.rsyslog import RsyslogService, find_rsyslogd, gtls_driver, omkafka_module
from streams.stack.rsyslog_config import TlsInput, rsyslog_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER_CONFIG = ROOT / "docker" / "rsyslog" / "rsyslog.conf"


def _rsyslogd() -> str:
    found = find_rsyslogd()
    assert found, "no rsyslogd: run `make system-deps` (installs rsyslog and rsyslog-kafka)"
    assert omkafka_module(), "no omkafka: run `make system-deps` (installs rsyslog-kafka)"
    assert gtls_driver(), "no lmnsd_gtls: run `make system-deps` (installs rsyslog-gnutls)"
    return found


def _validate(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_rsyslogd(), "-N1", "-f", str(config)], capture_output=True, text=True, check=False
    )


def _settings(directory: Path) -> StackSettings:
    return StackSettings(
        dir=directory,
        kafka_port=19092,
        syslog_port=15514,
        syslog_tls_port=16514,
        syslog_topic="test-atna",
    )


@pytest.fixture(scope="module")
def made_pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    """One local PKI for the module (RSA 3072 keys take a while to make)."""
    pki = LocalPki(tmp_path_factory.mktemp("pki") / "tls")
    pki.ensure("127.0.0.1")
    return pki


@pytest.fixture
def service(tmp_path: Path, made_pki: LocalPki) -> RsyslogService:
    """A receiver whose stack directory already holds the module's CA and certificates."""
    service = RsyslogService(_settings(tmp_path))
    shutil.copytree(made_pki.dir, service.pki.dir)  # modes kept: keys stay 0600
    return service


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
    assert 'port="16514"' in text and 'streamDriver.name="gtls"' in text
    assert 'string="%msg%"' in text
    assert 'parser.escapeControlCharactersOnReceive="off"' in text
    assert 'action.resumeRetryCount="-1"' in text
    # Inputs take maxMessageSize when they are created: the global must come first.
    assert text.index("maxMessageSize") < text.index('type="imtcp"')
    # Our own instance: no local log socket, no kernel log.
    assert "imuxsock" not in text and "imklog" not in text


def _inputs(text: str) -> list[str]:
    return re.findall(r"^input\((.*?)^\)", text, re.M | re.S)


def test_the_tls_input_asks_for_client_certificates(service: RsyslogService) -> None:
    """Plain TCP and TLS (RFC 5425) into the same ruleset; the driver is the TLS input's own."""
    service.write_config()
    plain, tls = _inputs(service.config_file.read_text())
    assert 'port="15514"' in plain and "streamDriver" not in plain
    assert 'address="127.0.0.1"' in tls and 'port="16514"' in tls and 'ruleset="atna"' in tls
    assert 'streamDriver.name="gtls"' in tls and 'streamDriver.mode="1"' in tls
    assert 'streamDriver.authMode="x509/certvalid"' in tls
    assert 'streamDriver.permitExpiredCerts="off"' in tls
    assert 'gnutlsPriorityString="NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"' in tls
    pki = service.pki
    assert f'streamDriver.CAFile="{pki.ca_cert}"' in tls
    assert f'streamDriver.CertFile="{pki.server_cert}"' in tls
    assert f'streamDriver.KeyFile="{pki.server_key}"' in tls
    assert pki.dir == service.config_dir / "tls"
    assert service.ports() == {
        "GUETTEUR_STACK_SYSLOG_PORT": 15514,
        "GUETTEUR_STACK_SYSLOG_TLS_PORT": 16514,
    }


def test_status_asks_to_restart_a_receiver_started_with_the_openssl_driver(
    service: RsyslogService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver started by an older Guetteur still runs the driver that double-closes sockets
    (rsyslog 8.2302's ossl): status says to restart it, as the runbook reads status."""
    service.write_config()
    monkeypatch.setattr(service, "running", lambda: True)
    assert "restart" not in service.status().detail
    config = service.config_file.read_text()
    service.config_file.write_text(config.replace('name="gtls"', 'name="ossl"'))
    assert "OpenSSL driver, which can drop connections: restart it" in service.status().detail


def _contents(pki: LocalPki) -> dict[str, tuple[bytes, int]]:
    return {
        path.name: (path.read_bytes(), path.stat().st_ino)
        for path in sorted(pki.dir.iterdir())
        if not path.name.startswith(".")
    }


def test_the_local_ca_and_certificates_are_made_once(tmp_path: Path) -> None:
    service = RsyslogService(_settings(tmp_path))
    assert not service.pki.dir.exists()
    service.write_config()
    pki = service.pki
    made = _contents(pki)
    assert set(made) == {"ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"}
    for key in (pki.ca_key, pki.server_key, pki.client_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert not any(p.name.startswith(".") for p in pki.dir.iterdir())  # no scratch left

    service.write_config()
    assert _contents(pki) == made  # the same files, not rewritten

    # A lost leaf is made again, signed by the CA in place; the others stay.
    pki.client_cert.unlink()
    pki.client_key.unlink()
    service.write_config()
    again = _contents(pki)
    assert {k: v for k, v in again.items() if not k.startswith("client")} == {
        k: v for k, v in made.items() if not k.startswith("client")
    }
    assert again["client.pem"] != made["client.pem"]
    _mutual_tls(pki.ca_cert, (pki.server_cert, pki.server_key), (pki.client_cert, pki.client_key))


def test_half_a_pair_is_not_replaced(service: RsyslogService) -> None:
    service.write_config()
    service.pki.server_cert.unlink()
    with pytest.raises(StackError, match=r"server\.key exists without .*server\.pem"):
        service.write_config()
    assert service.pki.server_key.exists()


def test_the_certificates_authenticate_both_ends(service: RsyslogService) -> None:
    """The server certificate names 127.0.0.1 and localhost; the client one is atna-client."""
    service.write_config()
    pki = service.pki
    server = (pki.server_cert, pki.server_key)
    peer = _mutual_tls(pki.ca_cert, server, (pki.client_cert, pki.client_key), "localhost")
    assert ("commonName", "atna-client") in [field for rdn in peer["subject"] for field in rdn]
    _mutual_tls(pki.ca_cert, server, (pki.client_cert, pki.client_key), "127.0.0.1")
    with pytest.raises(ssl.SSLError):  # the server asks for a client certificate
        _mutual_tls(pki.ca_cert, server, None)


def test_an_operators_own_pki_replaces_the_generated_one(
    tmp_path: Path, made_pki: LocalPki
) -> None:
    own = made_pki  # some PKI's files, for the test
    settings = _settings(tmp_path).model_copy(
        update={
            "syslog_tls_ca": own.ca_cert,
            "syslog_tls_cert": own.server_cert,
            "syslog_tls_key": own.server_key,
        }
    )
    operator = RsyslogService(settings)
    operator.write_config()
    assert not operator.pki.dir.exists()  # nothing generated
    assert operator.tls_input() == TlsInput(16514, own.ca_cert, own.server_cert, own.server_key)
    text = operator.config_file.read_text()
    assert f'streamDriver.CAFile="{own.ca_cert}"' in text
    assert f'streamDriver.KeyFile="{own.server_key}"' in text
    assert _validate(operator.config_file).returncode == 0

    # Their CA alone: a server certificate is still made here, no client one (theirs would
    # not be signed by the CA the input checks clients with).
    ca_only = RsyslogService(
        settings.model_copy(update={"syslog_tls_cert": None, "syslog_tls_key": None})
    )
    ca_only.write_config()
    assert sorted(p.name for p in ca_only.pki.dir.iterdir()) == [
        "ca.key",
        "ca.pem",
        "server.key",
        "server.pem",
    ]
    assert ca_only.tls_input().ca_file == own.ca_cert


def test_own_pki_settings_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUETTEUR_STACK_SYSLOG_TLS_CERT", str(tmp_path / "cert.pem"))
    with pytest.raises(ValidationError, match="SYSLOG_TLS_KEY"):
        StackSettings()  # a certificate without its key
    monkeypatch.setenv("GUETTEUR_STACK_SYSLOG_TLS_KEY", str(tmp_path / "key.pem"))
    monkeypatch.setenv("GUETTEUR_STACK_SYSLOG_TLS_PORT", "7514")
    settings = StackSettings(dir=tmp_path)
    assert settings.syslog_tls_port == 7514
    with pytest.raises(StackError, match=r"GUETTEUR_STACK_SYSLOG_TLS_CERT: .*cert\.pem"):
        RsyslogService(settings).write_config()  # the files do not exist


def _mutual_tls(
    ca: Path,
    server: tuple[Path, Path],
    client: tuple[Path, Path] | None,
    name: str = "127.0.0.1",
) -> dict[str, Any]:
    """A handshake between two Python ends, configured as rsyslog's input (client certificate
    required, signed by ``ca``) and a sender; returns the client certificate the server saw."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*server)
    server_ctx.load_verify_locations(ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        client_ctx.load_cert_chain(*client)
    seen: dict[str, Any] = {}
    left, right = socket.socketpair()

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(left, server_side=True) as conn:
                seen.update(conn.getpeercert() or {})
                conn.sendall(b"ok")
        except (ssl.SSLError, OSError):
            left.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        right.settimeout(10)
        with client_ctx.wrap_socket(right, server_hostname=name) as conn:
            if conn.recv(2) != b"ok":  # TLS 1.3: a refused client learns it here
                raise ssl.SSLError("the server closed the connection")
    finally:
        right.close()
        thread.join(10)
    return seen


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


def test_rsyslogd_rejects_an_unknown_tls_parameter(service: RsyslogService) -> None:
    """And so on the TLS input: a misspelt streamDriver parameter fails here."""
    service.write_config()
    path = service.config_dir / "broken.conf"
    path.write_text(
        service.config_file.read_text().replace("streamDriver.CAFile", "streamDriver.CAFle")
    )
    result = _validate(path)
    assert result.returncode != 0
    assert "streamDriver.CAFle" in result.stdout + result.stderr


def test_the_compose_config_passes_rsyslogd(tmp_path: Path) -> None:
    """docker/rsyslog/rsyslog.conf, its container work directory swapped for one that exists."""
    text = DOCKER_CONFIG.read_text().replace("/var/spool/rsyslog", str(tmp_path))
    path = tmp_path / "rsyslog.conf"
    path.write_text(text)
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def _parameters(body: str) -> dict[str, str]:
    return dict(re.findall(r'^\s*([\w.]+)="([^"]*)"', body, re.M))


def test_the_compose_tls_input_is_the_local_one(service: RsyslogService) -> None:
    """Same TLS parameters as the local stack's, and the files under the same names (so the
    local stack's generated directory can be mounted as it is)."""
    service.write_config()
    local = _parameters(_inputs(service.config_file.read_text())[1])
    plain, tls = (_parameters(body) for body in _inputs(DOCKER_CONFIG.read_text()))
    assert "streamDriver.name" not in plain and plain["port"] == "5514"
    assert tls["port"] == str(StackSettings().syslog_tls_port) == "6514"
    files = {"streamDriver.CAFile", "streamDriver.CertFile", "streamDriver.KeyFile"}
    for name in files:
        assert Path(tls[name]).parent == Path("/etc/rsyslog/tls")
        assert Path(tls[name]).name == Path(local[name]).name
    ignored = {*files, "address", "port"}
    assert {k: v for k, v in tls.items() if k not in ignored} == {
        k: v for k, v in local.items() if k not in ignored
    }

"""rsyslog for the local stack: the syslog receiver in front of Kafka, for IHE ATNA audit messages.

Clinical systems send their audit records (DICOM PS3.15 XML) as syslog RFC 5424 messages over
TCP, each frame prefixed by its length (octet counting, RFC 6587, as RFC 5425 does over TLS),
because the XML spans several lines. Debian's rsyslog receives them (``imtcp``) and writes each
message's MSG part, the XML and nothing else, to a Kafka topic (``omkafka``) the worker reads.
Framing, partial reads and back-pressure are easy to get subtly wrong; rsyslog has them right.

Unless the operator names their own CA, certificate and key (``GUETTEUR_STACK_SYSLOG_TLS_CA``/
``_CERT``/``_KEY``), the stack makes a local CA under ``<stack>/syslog/tls/`` on first start,
with a server certificate for this host and a client certificate (``atna-client``) for local
senders and tests; existing files are never replaced (remove the directory to get new ones).

This instance has its own config, work directory, pid file and ports, loads neither ``imuxsock``
(``/dev/log``) nor ``imklog``, and keeps its internal messages in its own log: a system rsyslog
on the same machine is left alone.

The config itself, what it asks of rsyslog and why, is in ``streams.stack.rsyslog_config``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

from streams.settings import Settings, StackSettings
from streams.stack.daemon import DaemonService
from streams.stack.pki import SERVICE, LocalPki
from streams.stack.rsyslog_config import STATS_INTERVAL, TlsInput, rsyslog_config
from streams.stack.service import Progress, ServiceStatus, StackError

# rsyslogd is in /usr/sbin, which a non-root user's PATH often lacks.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
MODULE_GLOBS = ("/usr/lib/*/rsyslog/omkafka.so", "/usr/lib/rsyslog/omkafka.so")
INSTALL_HINT = "run `make` (it installs missing system packages) or " + (
    "`sudo apt-get install -y rsyslog rsyslog-kafka rsyslog-gnutls`"
)
# The GnuTLS network stream driver, for the TLS input (Debian package rsyslog-gnutls).
GTLS_GLOBS = ("/usr/lib/*/rsyslog/lmnsd_gtls.so", "/usr/lib/rsyslog/lmnsd_gtls.so")
PACKAGES = "rsyslog rsyslog-kafka rsyslog-gnutls"


def find_rsyslogd() -> str | None:
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN_DIRS])
    return shutil.which("rsyslogd", path=search)


def omkafka_module() -> Path | None:
    """The Kafka output comes in its own package (rsyslog-kafka): rsyslogd alone is not enough."""
    return _module(MODULE_GLOBS)


def gtls_driver() -> Path | None:
    """The TLS input's stream driver comes in its own package (rsyslog-gnutls)."""
    return _module(GTLS_GLOBS)


def _module(globs: tuple[str, ...]) -> Path | None:
    for pattern in globs:
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return found[0]
    return None


class RsyslogService(DaemonService):
    name = SERVICE
    binary = "rsyslogd"
    package = PACKAGES
    port_setting = "GUETTEUR_STACK_SYSLOG_PORT"
    tls_port_setting = "GUETTEUR_STACK_SYSLOG_TLS_PORT"

    def __init__(self, settings: StackSettings):
        super().__init__(settings)
        # rsyslogd refuses to start when its -i file names a live process: ours is written by
        # start() with rsyslogd's own pid, so rsyslogd gets a file of its own.
        self.rsyslogd_pid_file = settings.dir / "run" / f"{self.name}.rsyslogd.pid"
        self.pki = LocalPki(self.config_dir / "tls")
        self.stats_interval = STATS_INTERVAL

    @property
    def port(self) -> int:
        return self.settings.syslog_port

    @property
    def tls_port(self) -> int:
        return self.settings.syslog_tls_port

    def tls_input(self) -> TlsInput:
        """The TLS input's files: the operator's when set, else the generated ones."""
        s = self.settings
        return TlsInput(
            port=self.tls_port,
            ca_file=_absolute(s.syslog_tls_ca) if s.syslog_tls_ca else self.pki.ca_cert,
            cert_file=_absolute(s.syslog_tls_cert) if s.syslog_tls_cert else self.pki.server_cert,
            key_file=_absolute(s.syslog_tls_key) if s.syslog_tls_key else self.pki.server_key,
        )

    def ensure_tls_files(self) -> TlsInput:
        """Check the operator's files, then make the local ones the settings do not replace."""
        s = self.settings
        for setting, path in (
            ("GUETTEUR_STACK_SYSLOG_TLS_CA", s.syslog_tls_ca),
            ("GUETTEUR_STACK_SYSLOG_TLS_CERT", s.syslog_tls_cert),
            ("GUETTEUR_STACK_SYSLOG_TLS_KEY", s.syslog_tls_key),
        ):
            if path is not None and not _absolute(path).is_file():
                raise StackError(self.name, f"{setting}: {_absolute(path)} is not a file")
        own_ca, own_cert = s.syslog_tls_ca is not None, s.syslog_tls_cert is not None
        if not (own_ca and own_cert):
            # The client certificate only when the local CA is the one clients are checked with.
            self.pki.ensure(s.host, server=not own_cert, client=not own_ca)
        return self.tls_input()

    @property
    def topic(self) -> str:
        return self.settings.syslog_topic or Settings().atna_topic

    def running_topic(self) -> str | None:
        """The topic the running receiver writes to: the one in the config it was started with
        (the environment of whoever asks may name another)."""
        text = self._started_config() if self.running() else None
        found = re.search(r'^\s*topic="([^"]+)"', text, re.M) if text else None
        return found.group(1) if found else None

    def running_tls_port(self) -> int | None:
        """The TLS input's port in the config the receiver was started with (None: none)."""
        for body in re.findall(r"^input\((.*?)^\)", self._started_config() or "", re.M | re.S):
            port = re.search(r'^\s*port="(\d+)"', body, re.M)
            if port and 'streamDriver.mode="1"' in body:
                return int(port.group(1))
        return None

    def _started_config(self) -> str | None:
        try:
            return self.config_file.read_text()
        except OSError:
            return None

    @property
    def url(self) -> str:
        return f"tcp://{self.settings.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "rsyslog.conf"

    @property
    def stats_file(self) -> Path:
        """rsyslog's counters (impstats, JSON lines), next to its log."""
        return self.log_file.with_name(f"{self.name}.stats.json")

    def executable(self) -> str:
        found = find_rsyslogd()
        if found is None:
            raise StackError(self.name, f"`rsyslogd` is not installed: {INSTALL_HINT}")
        return found

    def installed(self) -> bool:
        return (
            find_rsyslogd() is not None
            and omkafka_module() is not None
            and gtls_driver() is not None
        )

    def install(self, progress: Progress) -> None:
        self.executable()
        if omkafka_module() is None:
            raise StackError(self.name, f"rsyslog's Kafka output is not installed: {INSTALL_HINT}")
        if gtls_driver() is None:
            raise StackError(
                self.name, f"rsyslog's GnuTLS driver (TLS) is not installed: {INSTALL_HINT}"
            )

    def write_config(self) -> None:
        s = self.settings
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tls = self.ensure_tls_files()
        self.config_file.write_text(
            rsyslog_config(
                address=s.host,
                port=self.port,
                brokers=[s.kafka_bootstrap],
                topic=self.topic,
                work_dir=self.data_dir,
                internal_log=self.log_file,
                tls=tls,
                stats_file=self.stats_file,
                stats_interval=self.stats_interval,
            )
        )

    def arguments(self) -> list[str]:
        return ["-n", "-f", str(self.config_file), "-i", str(self.rsyslogd_pid_file)]

    def start(self) -> None:
        # Only called when ours is not running: a file left by a killed rsyslogd is stale.
        self.rsyslogd_pid_file.unlink(missing_ok=True)
        super().start()

    def ports(self) -> dict[str, int]:
        return {self.port_setting: self.port, self.tls_port_setting: self.tls_port}

    def ready(self) -> bool:
        """Ready once its inputs accept connections (Kafka may still be on its way): the TLS one
        too, unless the receiver was started without it (by an older Guetteur; status says so).
        The probe sends nothing: the receiver logs one failed handshake per start."""
        ports = [self.port]
        tls_port = self.running_tls_port()
        ports += [tls_port] if tls_port else []
        try:
            for port in ports:
                with socket.create_connection((self.settings.host, port), timeout=3):
                    pass
        except OSError:
            return False
        return True

    def version(self) -> str:
        try:
            result = subprocess.run(
                [self.executable(), "-v"], capture_output=True, text=True, check=False
            )
        except StackError:
            return "not installed"
        found = re.search(r"rsyslogd\s+(\d\S*)", result.stdout)
        return found.group(1) if found else "unknown"

    def running_tls_driver(self) -> str | None:
        """The TLS input's stream driver in the config the receiver was started with."""
        found = re.search(r'^\s*streamDriver\.name="([^"]+)"', self._started_config() or "", re.M)
        return found.group(1) if found else None

    def status(self) -> ServiceStatus:
        running = self.running()
        tls_port = self.running_tls_port() if running else self.tls_port
        tls = f"TLS (client certificates) on port {tls_port}"
        if not tls_port:
            tls = "no TLS input (started before it existed): restart it"
        elif running and self.running_tls_driver() == "ossl":
            tls = "TLS through the OpenSSL driver, which can drop connections: restart it"
        detail = f"ATNA syslog -> Kafka topic {self.topic}; {tls}"
        return dataclasses.replace(super().status(), detail=detail)


def _absolute(path: Path) -> Path:
    """Paths in rsyslogd's config are absolute: they must not depend on where it was started."""
    return path.expanduser().absolute()

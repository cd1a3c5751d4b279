"""rsyslog for the local stack: the syslog receiver in front of Kafka, for IHE ATNA audit messages.

Clinical systems send their audit records (DICOM PS3.15 XML) as syslog RFC 5424 messages over
TCP, each frame prefixed by its length (octet counting, RFC 6587, as RFC 5425 does over TLS),
because the XML spans several lines. Debian's rsyslog receives them (``imtcp``) and writes each
message's MSG part, the XML and nothing else, to a Kafka topic (``omkafka``) the worker reads.
Framing, partial reads and back-pressure are easy to get subtly wrong; rsyslog has them right.

Two inputs feed the same ruleset. Plain TCP (``syslog_port``, 5514) for tools on this host. TLS
(``syslog_tls_port``, 6514; RFC 5425) with mutual authentication, as IHE ATNA asks of a secure
node: GnuTLS's stream driver (``gtls``, Debian's rsyslog-gnutls), TLS 1.2 at least, and a client
certificate signed by the configured CA (``x509/certvalid``: any name, not expired). Not the
OpenSSL driver (``ossl``): in Debian 12's rsyslog (8.2302) it closes every TLS session's socket
twice (OpenSSL's BIO, then the TCP layer), so a connection accepted in between, on either port,
loses its socket and its messages. Our CI saw it: a sender's frame vanished right after a
failed handshake (upstream fix a2fd9b317, "Prevent double close of socket fd", December 2025).
GnuTLS never closes the socket it is given.

Unless the operator names their own CA, certificate and key (``GUETTEUR_STACK_SYSLOG_TLS_CA``/
``_CERT``/``_KEY``), the stack makes a local CA under ``<stack>/syslog/tls/`` on first start,
with a server certificate for this host and a client certificate (``atna-client``) for local
senders and tests; existing files are never replaced (remove the directory to get new ones).

This instance has its own config, work directory, pid file and ports, loads neither ``imuxsock``
(``/dev/log``) nor ``imklog``, and keeps its internal messages in its own log: a system rsyslog
on the same machine is left alone.

What the receiver does and does not guarantee:

- The MSG part keeps a leading UTF-8 BOM when the sender put one (RFC 5424 allows it): the
  consumer strips it.
- ``parser.dropTrailingLFOnReception`` stays on (the default): one line feed ending a frame is
  dropped, so a sender that ends each frame with LF does not add it to the XML.
- Delivery is at least once: during a Kafka outage librdkafka keeps and retries what it was given
  (resubmitted after ``message.timeout.ms``), rsyslog's disk-assisted queue holds the rest. A
  message may reach Kafka twice around an outage; one held by librdkafka when rsyslog is stopped
  during an outage is lost (``keepFailedMessages`` would save it, but its file is line-based and
  cuts multi-line XML apart, so it stays off).
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
from streams.stack.service import Progress, ServiceStatus, StackError

# rsyslogd is in /usr/sbin, which a non-root user's PATH often lacks.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
MODULE_GLOBS = ("/usr/lib/*/rsyslog/omkafka.so", "/usr/lib/rsyslog/omkafka.so")
INSTALL_HINT = "run `make` (it installs missing system packages) or " + (
    "`sudo apt-get install -y rsyslog rsyslog-kafka rsyslog-gnutls`"
)
MAX_MESSAGE = 256 * 1024  # one audit record; DICOM audit XML is rarely above a few tens of KB
# How long librdkafka waits for a missing topic (created by the worker) before failing what it
# holds for it; omkafka then resubmits. Kafka here never auto-creates topics.
TOPIC_WAIT_MS = 600_000
# How often rsyslog writes its counters (impstats) to the service's stats file.
STATS_INTERVAL = 60
# The GnuTLS network stream driver, for the TLS input (Debian package rsyslog-gnutls).
GTLS_GLOBS = ("/usr/lib/*/rsyslog/lmnsd_gtls.so", "/usr/lib/rsyslog/lmnsd_gtls.so")
PACKAGES = "rsyslog rsyslog-kafka rsyslog-gnutls"
# The TLS input's protocol versions, as a GnuTLS priority string: TLS 1.3 and 1.2 (ATNA
# senders' TLS stacks all take 1.2), nothing older.
TLS_PRIORITIES = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"


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


def quoted(value: str) -> str:
    """An rsyslog config string literal (backslash and double quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclasses.dataclass(frozen=True)
class TlsInput:
    """The TLS input: its port, the CA client certificates must chain to, the server's own."""

    port: int
    ca_file: Path
    cert_file: Path
    key_file: Path


def rsyslog_config(
    *,
    address: str,
    port: int,
    brokers: list[str],
    topic: str,
    work_dir: Path,
    internal_log: Path,
    tls: TlsInput | None = None,
    stats_file: Path | None = None,
    stats_interval: int = STATS_INTERVAL,
) -> str:
    """The whole rsyslog.conf; globals come first since inputs read them when they are created."""
    broker_list = ", ".join(quoted(b) for b in brokers)
    stats = (
        ""
        if stats_file is None
        else f"""
# Counters, as JSON lines every {stats_interval} s: frames each input took, messages handed to
# Kafka, acknowledged, failed or queued. What to read when audit records seem to go missing.
module(
  load="impstats"
  interval="{stats_interval}"
  format="json"
  resetCounters="off"
  log.syslog="off"
  log.file={quoted(str(stats_file))}
)
"""
    )
    tls_input = (
        ""
        if tls is None
        else f"""
# Syslog over TLS (RFC 5425), IHE ATNA's secure transport, with mutual authentication: the
# sender must present a certificate signed by the CA below (any name, not expired). Driver,
# mode and files are this input's own: the plain input above stays plain.
input(
  type="imtcp"
  address={quoted(address)}
  port="{tls.port}"
  ruleset="atna"
  maxFrameSize="{MAX_MESSAGE}"
  discardTruncatedMsg="on"
  streamDriver.name="gtls"
  streamDriver.mode="1"
  streamDriver.authMode="x509/certvalid"
  streamDriver.permitExpiredCerts="off"
  streamDriver.CAFile={quoted(str(tls.ca_file))}
  streamDriver.CertFile={quoted(str(tls.cert_file))}
  streamDriver.KeyFile={quoted(str(tls.key_file))}
  gnutlsPriorityString="{TLS_PRIORITIES}"
)
"""
    )
    return f"""# Written by the local stack (streams/stack/rsyslog.py): edits are overwritten.
# Syslog over TCP and TLS (RFC 5424, octet-counted frames) -> Kafka, the MSG part only.

# Before any input: imtcp takes maxMessageSize when the input is created.
global(
  workDirectory={quoted(str(work_dir))}
  maxMessageSize="{MAX_MESSAGE}"
  # Keep line feeds and tabs: the audit XML spans lines (the default turns LF into "#012").
  parser.escapeControlCharactersOnReceive="off"
  # rsyslog's own messages stay in this instance (not sent to a system log socket).
  processInternalMessages="on"
  net.enableDNS="off"
)

# imtcp takes octet-counted frames ("<length> <message>") as well as LF-ended ones.
module(load="imtcp" maxSessions="200")
module(load="omkafka")
{stats}
# The MSG part, nothing added: the audit XML (with the sender's BOM, if any).
template(name="atnaMessage" type="string" string="%msg%")

ruleset(name="atna") {{
  action(
    type="omkafka"
    name="atna-to-kafka"
    broker=[{broker_list}]
    topic={quoted(topic)}
    template="atnaMessage"
    partitions.auto="on"
    # What Kafka failed to take is produced again (in memory). The failed-message file is
    # line-based and would cut multi-line XML apart: off.
    resubmitOnFailure="on"
    keepFailedMessages="off"
    closeTimeout="10000"
    # The topic is created by the worker: wait for it rather than fail its messages.
    confParam=["topic.metadata.propagation.max.ms={TOPIC_WAIT_MS}",
               "socket.keepalive.enable=true"]
    topicConfParam=["acks=all"]
    # While Kafka is down: retry for ever, queue in memory, spill to disk, keep it on stop.
    queue.type="LinkedList"
    queue.filename="atna-to-kafka"
    queue.saveOnShutdown="on"
    queue.maxDiskSpace="1g"
    action.resumeRetryCount="-1"
    action.resumeInterval="5"
  )
}}

input(
  type="imtcp"
  address={quoted(address)}
  port="{port}"
  ruleset="atna"
  maxFrameSize="{MAX_MESSAGE}"
  discardTruncatedMsg="on"
)
{tls_input}
# rsyslog's own messages (start, stop, Kafka errors) go to this service's log, not to Kafka.
*.* action(type="omfile" file={quoted(str(internal_log))})
"""


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

"""The receiver's rsyslog.conf: two inputs, one ruleset, the MSG part to Kafka.

Two inputs feed the same ruleset. Plain TCP (``syslog_port``, 5514) for tools on this host. TLS
(``syslog_tls_port``, 6514; RFC 5425) with mutual authentication, as IHE ATNA asks of a secure
node: GnuTLS's stream driver (``gtls``, Debian's rsyslog-gnutls), TLS 1.2 at least, and a client
certificate signed by the configured CA (``x509/certvalid``: any name, not expired). Not the
OpenSSL driver (``ossl``): in Debian 12's rsyslog (8.2302) it closes every TLS session's socket
twice (OpenSSL's BIO, then the TCP layer), so a connection accepted in between, on either port,
loses its socket and its messages. Our CI saw it: a sender's frame vanished right after a
failed handshake (upstream fix a2fd9b317, "Prevent double close of socket fd", December 2025).
GnuTLS never closes the socket it is given.

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
from pathlib import Path

MAX_MESSAGE = 256 * 1024  # one audit record; DICOM audit XML is rarely above a few tens of KB
# How long librdkafka waits for a missing topic (created by the worker) before failing what it
# holds for it; omkafka then resubmits. Kafka here never auto-creates topics.
TOPIC_WAIT_MS = 600_000
# How often rsyslog writes its counters (impstats) to the service's stats file.
STATS_INTERVAL = 60
# The TLS input's protocol versions, as a GnuTLS priority string: TLS 1.3 and 1.2 (ATNA
# senders' TLS stacks all take 1.2), nothing older.
TLS_PRIORITIES = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"


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
    return f"""# Written by the local stack (streams/stack/rsyslog_config.py): edits are lost.
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

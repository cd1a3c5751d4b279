"""Runtime configuration, read from ``GUETTEUR_*`` environment variables.

Everything an operator may need to change (addresses, ports, topic and index names) lives here,
validated by pydantic, so a typo fails at start-up with the variable's name instead of surfacing
as a connection error minutes later. Detection thresholds are *policy*, not settings: they live
in the policy file (see ``detectors``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.decode import EventTimeBounds

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the key and the problem."""


def _default_stack_dir() -> Path:
    """Inside a source checkout the stack lives in ``.stack/`` (git-ignored); else in the cache."""
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / ".stack"
    return Path.home() / ".cache" / "guetteur" / "stack"


class StackSettings(BaseSettings):
    """Where and how the bundled local Kafka + Elasticsearch stack runs (``guetteur stack``)."""

    model_config = SettingsConfigDict(env_prefix="GUETTEUR_STACK_", extra="ignore")

    dir: Path = Field(default_factory=_default_stack_dir)
    host: str = "127.0.0.1"
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=29093, ge=1, le=65535)
    es_port: int = Field(default=9200, ge=1, le=65535)
    es_transport_port: int = Field(default=9300, ge=1, le=65535)
    prometheus_port: int = Field(default=9090, ge=1, le=65535)
    alertmanager_port: int = Field(default=9093, ge=1, le=65535)
    syslog_port: int = Field(
        default=5514,
        ge=1,
        le=65535,
        description="TCP port of the stack's syslog receiver (rsyslog), for ATNA audit records.",
    )
    syslog_tls_port: int = Field(
        default=6514,
        ge=1,
        le=65535,
        description="TLS port of the syslog receiver (RFC 5425, IHE ATNA): senders must present "
        "a client certificate signed by the receiver's CA.",
    )
    syslog_tls_ca: Path | None = Field(
        default=None,
        description="CA certificate(s) (PEM) that client certificates of the TLS input must chain "
        "to; the stack's generated CA (<dir>/syslog/tls/ca.pem) when unset.",
    )
    syslog_tls_cert: Path | None = Field(
        default=None,
        description="The TLS input's server certificate (PEM, intermediates after it), with "
        "GUETTEUR_STACK_SYSLOG_TLS_KEY; one signed by the generated CA when unset.",
    )
    syslog_tls_key: Path | None = Field(
        default=None,
        description="The private key (PEM, unencrypted) of GUETTEUR_STACK_SYSLOG_TLS_CERT.",
    )
    syslog_topic: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Kafka topic the syslog receiver writes each message's MSG part to; by "
        "default the worker's ATNA topic (<GUETTEUR_TOPIC_EVENTS>-atna), so they cannot drift.",
    )
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[kmg]$")
    es_heap: str = Field(default="768m", pattern=r"^\d+[kmg]$")
    es_user: str = Field(
        default="guetteur-es",
        description="Unprivileged account Elasticsearch runs as when the stack is started by root.",
    )
    start_timeout: float = Field(default=180.0, gt=0)

    @model_validator(mode="after")
    def _tls_cert_with_its_key(self) -> StackSettings:
        if (self.syslog_tls_cert is None) != (self.syslog_tls_key is None):
            raise ValueError(
                "GUETTEUR_STACK_SYSLOG_TLS_CERT and GUETTEUR_STACK_SYSLOG_TLS_KEY go together: "
                "set both or neither"
            )
        return self

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def es_url(self) -> str:
        return f"http://{self.host}:{self.es_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.host}:{self.alertmanager_port}"


class Settings(BaseSettings):
    """Connections and names used by the worker and the CLI.

    Addresses default to the local stack's, so ``guetteur demo`` needs no configuration; in
    production set ``GUETTEUR_KAFKA_BOOTSTRAP`` and ``GUETTEUR_ES_URL`` (plus credentials).
    """

    model_config = SettingsConfigDict(env_prefix="GUETTEUR_", extra="ignore")

    kafka_bootstrap: str | None = None
    es_url: str | None = None
    es_username: str | None = None
    es_password: SecretStr | None = None
    es_api_key: SecretStr | None = None
    es_ca_certs: Path | None = None

    app_id: str = Field(default="guetteur", pattern=r"^[A-Za-z0-9._-]+$")
    topic_events: str = Field(default="access-events", pattern=r"^[A-Za-z0-9._-]+$")
    topic_dlq: str = Field(default="access-events-dlq", pattern=r"^[A-Za-z0-9._-]+$")
    topic_alerts: str = Field(default="access-alerts", pattern=r"^[A-Za-z0-9._-]+$")
    dlq_retention_days: float = Field(
        default=30,
        gt=0,
        le=365,
        description="How long dead letters (raw bytes, raw patient ids included) are kept.",
    )
    dlq_max_message_bytes: int = Field(
        default=512 * 1024,
        ge=4096,
        le=900_000,
        description="A refused message larger than this is dead-lettered as a reference (source "
        "position, size, SHA-256, prefix), since the broker would refuse it whole.",
    )
    event_time_earliest_year: int = Field(
        default=2000, ge=1971, le=9998, description="Events stamped before this year are refused."
    )
    event_time_latest_year: int = Field(
        default=2100, ge=1971, le=9998, description="Events stamped after this year are refused."
    )
    event_max_future_seconds: float = Field(
        default=3600,
        ge=0,
        description="Events stamped further than this ahead of the worker's clock are refused.",
    )
    topic_partitions: int = Field(default=4, ge=1, le=1024)
    topic_replication: int = Field(default=1, ge=1, le=16)
    index_prefix: str = Field(default="guetteur", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    data_dir: Path | None = None
    kafka_session_timeout: float = Field(
        default=60.0,
        ge=6,
        le=1800,
        description="Seconds before a silent worker's partitions go to the others (failover).",
    )
    idle_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="A caught-up source partition silent this long lets the detectors' clock "
        "follow the wall clock, so deadline rules decide on time in silence.",
    )
    tick_seconds: float = Field(
        default=0.5, gt=0, le=60, description="How often the clock is sent while sources are quiet."
    )
    batch_size: int = Field(default=500, ge=1, le=50_000)
    batch_seconds: float = Field(
        default=0.2,
        gt=0,
        description="A batch waits at most this long to fill; each stage adds up to this to "
        "the event-to-alert latency.",
    )
    compression: Literal["gzip", "none"] = Field(
        default="gzip",
        description="Compression of what the worker produces (detect, alerts, changelogs, dead "
        "letters). A fetch brings at most 1 MiB per partition, so compressed batches carry "
        "several times more forwarded events per fetch: detection keeps closer to ingestion.",
    )
    pseudonym_key: SecretStr | None = None
    pseudonym_key_id: str = "k1"
    pseudonym_key_file: Path | None = None
    checkpoint_key: SecretStr | None = None
    checkpoint_key_id: str = "c1"
    checkpoint_key_file: Path | None = None
    checkpoint_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often the worker signs the chain heads; 0 = after every batch.",
    )
    checkpoint_file: Path | None = Field(
        default=None,
        description=(
            "Also append every signed checkpoint to this file (JSON lines), an anchor outside "
            "Elasticsearch and Kafka; put it on append-only or remote storage."
        ),
    )
    retention_months: int = Field(
        default=12,
        ge=6,
        le=12,
        description="How long the access history is kept (CNIL: 6 to 12 months).",
    )
    policy_file: Path | None = Field(
        default=None,
        description="The detection policy (TOML); the defaults when unset.",
    )
    alertmanager_url: str | None = Field(
        default=None, description="Alertmanager for pages; the local stack's when unset."
    )
    page_severities: str = Field(
        default="high,critical",
        pattern=r"^(off|((low|medium|high|critical)(,(low|medium|high|critical))*))$",
        description="Alert severities that page on-call (comma-separated), or 'off'.",
    )
    page_resolve_seconds: float = Field(
        default=3600,
        gt=0,
        description="A paged incident with no new evidence for this long is resolved.",
    )
    page_webhook_url: str | None = Field(
        default=None, description="Also POST each paged alert (JSON) to this URL."
    )
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=6080, ge=1, le=65535)
    kibana_url: str = Field(
        default="http://127.0.0.1:5601", description="Base of the alert links in pages."
    )
    auditor: str | None = Field(
        default=None,
        description="On whose behalf command-line searches are made (default of --as): "
        "recorded as a stated purpose beside the OS user, never as the identity.",
    )
    auditor_role: Literal["auditor", "analyst", "admin"] = Field(
        default="auditor",
        description="The role recorded with command-line searches, reports and pseudonym "
        "look-ups on this machine.",
    )
    audit_record_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="How long a search, report or look-up waits for Kafka to acknowledge its "
        "audit record before failing without returning data.",
    )
    token_days: int = Field(
        default=90, ge=1, le=3650, description="How long a new console token is valid."
    )
    demo: bool = Field(
        default=False,
        description="Synthetic data only: allows a generated pseudonymisation key.",
    )
    log_level: str = Field(default="info", pattern=r"^(?i:debug|info|warning|error)$")

    @model_validator(mode="after")
    def _years_in_order(self) -> Settings:
        if self.event_time_earliest_year > self.event_time_latest_year:
            raise ValueError(
                "GUETTEUR_EVENT_TIME_EARLIEST_YEAR is after GUETTEUR_EVENT_TIME_LATEST_YEAR"
            )
        return self

    def event_time_bounds(self) -> EventTimeBounds:
        return EventTimeBounds(
            self.event_time_earliest_year,
            self.event_time_latest_year,
            timedelta(seconds=self.event_max_future_seconds),
        )

    def kafka_servers(self, stack: StackSettings | None = None) -> str:
        return self.kafka_bootstrap or (stack or StackSettings()).kafka_bootstrap

    def elasticsearch_url(self, stack: StackSettings | None = None) -> str:
        return self.es_url or (stack or StackSettings()).es_url

    def alertmanager(self, stack: StackSettings | None = None) -> str:
        return self.alertmanager_url or (stack or StackSettings()).alertmanager_url

    @property
    def paged_severities(self) -> set[str]:
        return set() if self.page_severities == "off" else set(self.page_severities.split(","))

    @property
    def history_index(self) -> str:
        """The alias over every monthly history index: what readers search."""
        return f"{self.index_prefix}-access-history"

    def history_month_index(self, year: int, month: int) -> str:
        return f"{self.history_index}-{year:04d}.{month:02d}"

    @property
    def alerts_index(self) -> str:
        return f"{self.index_prefix}-alerts"

    @property
    def triage_index(self) -> str:
        return f"{self.index_prefix}-alert-triage"

    @property
    def tokens_index(self) -> str:
        return f"{self.index_prefix}-api-tokens"

    @property
    def fhir_topic(self) -> str:
        """FHIR AuditEvents (one resource or a Bundle per message), mapped onto the events."""
        return f"{self.topic_events}-fhir"

    @property
    def atna_topic(self) -> str:
        """IHE ATNA audit messages (DICOM PS3.15 XML, e.g. from the syslog receiver)."""
        return f"{self.topic_events}-atna"

    @property
    def detect_topic(self) -> str:
        """Internal: accepted events routed to each detector by the detector's key."""
        return f"{self.app_id}-detect"

    @property
    def alert_parts_topic(self) -> str:
        """Internal: single-evidence alerts, keyed by alert id, to be merged into incidents."""
        return f"{self.app_id}-alert-parts"

    @property
    def checkpoint_topic(self) -> str:
        """The signed checkpoints again, outside Elasticsearch (compacted: one per record id),
        so deleting them from the index is itself detected (``streams.history.anchors``)."""
        return f"{self.topic_events}-checkpoints"

    @property
    def redaction_topic(self) -> str:
        """What minimisation removed from accepted events, without the values."""
        return f"{self.topic_events}-redactions"

    @property
    def exceptions_topic(self) -> str:
        """Detection exceptions, compacted: the live set every worker reads."""
        return f"{self.app_id}-exceptions"

    @property
    def exception_log_index(self) -> str:
        return f"{self.index_prefix}-exception-log"

    @property
    def checkpoint_index(self) -> str:
        return f"{self.index_prefix}-access-checkpoints"

    def demo_key_file(self, stack: StackSettings | None = None) -> Path:
        return (stack or StackSettings()).dir / "demo-pseudonym.key"

    def demo_checkpoint_key_file(self, stack: StackSettings | None = None) -> Path:
        return (stack or StackSettings()).dir / "demo-checkpoint.key"

    def worker_dir(self, stack: StackSettings | None = None) -> Path:
        return self.data_dir or (stack or StackSettings()).dir / "worker" / self.app_id


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load(cls: type[SettingsT]) -> SettingsT:
    """Build settings from the environment; an invalid value raises naming its variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = []
        for err in exc.errors():
            where = "_".join(str(p) for p in err["loc"]).upper()
            if where:
                problems.append(f"{prefix}{where}: {err['msg']}")
            else:  # a check across fields: its message names the variables
                problems.append(str(err["msg"]).removeprefix("Value error, "))
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None

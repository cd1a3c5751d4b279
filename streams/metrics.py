"""Every Prometheus metric of the worker, defined once: dashboards and rules use these names."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter(
    "guetteur_events_accepted_total",
    "Access events that passed validation, by emitting source.",
    ["source"],
)
EVENTS_REJECTED = Counter(
    "guetteur_events_rejected_total",
    "Messages refused by validation and sent to the dead-letter topic, by reason.",
    ["reason"],
)
FOREIGN_RECORDS = Counter(
    "guetteur_foreign_records_total",
    "FHIR AuditEvents and ATNA messages read, by format and outcome (mapped or refused).",
    ["format", "outcome"],
)
FOREIGN_EVENTS = Counter(
    "guetteur_foreign_events_total",
    "Access events mapped from FHIR AuditEvents and ATNA messages, by format.",
    ["format"],
)
FHIR_POSTS = Counter(
    "guetteur_fhir_posts_total",
    "Requests to the console's FHIR endpoint, by HTTP status (503: Kafka did not take them).",
    ["status"],
)
HISTORY_DOCUMENTS = Counter(
    "guetteur_history_documents_total",
    "Access-history documents acknowledged by Elasticsearch.",
)
HISTORY_DUPLICATES = Counter(
    "guetteur_history_duplicates_total",
    "Events not written because their event_id is already in the history (replays, redeliveries).",
)
RETRIES = Counter(
    "guetteur_retries_total",
    "Calls to Elasticsearch or Alertmanager retried after an error, by operation; a rising "
    "rate means an outage.",
    ["operation"],
)
CHECKPOINTS = Counter(
    "guetteur_checkpoints_total",
    "Signed chain-head checkpoints written to the checkpoint index.",
)
CONSOLE_DENIED = Counter(
    "guetteur_console_denied_total",
    "Console and API requests refused: 401 (no, unknown, expired or revoked token), 403 (role).",
    ["status"],
)
IDENTIFIERS_REDACTED = Counter(
    "guetteur_identifiers_redacted_total",
    "Identifiers pseudonymised out of free-text fields, and attributes dropped, at ingestion.",
    ["field", "kind"],
)
CHAIN_HEAD_FORGED = Counter(
    "guetteur_chain_head_forged_total",
    "Chain heads read back from the history whose MAC does not hold (tampering; run verify).",
)
ALERT_FINDINGS = Counter(
    "guetteur_alert_findings_total",
    "Single-evidence alerts produced by the detectors (before merging into incidents).",
)
ALERTS = Counter(
    "guetteur_alerts_total",
    "Incidents raised (each counted once, when first seen), by rule and severity.",
    ["rule_id", "severity"],
)
ALERT_UPDATES = Counter(
    "guetteur_alert_updates_total",
    "Incidents updated with new evidence (after the first), by rule and severity.",
    ["rule_id", "severity"],
)
ALERT_LATENCY = Histogram(
    "guetteur_alert_latency_seconds",
    "From the event time of an incident's newest evidence to the incident being emitted.",
    ["rule_id"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 6 * 3600, 24 * 3600),
)
PAGES = Counter(
    "guetteur_pages_total",
    "Alerts pushed to Alertmanager (or the webhook), by receiver and outcome.",
    ["receiver", "outcome"],
)
CONSUMER_LAG = Gauge(
    "guetteur_consumer_lag_messages",
    "Messages of the events topic not yet handled by this worker, by partition.",
    ["partition"],
)
CONSUMER_GAPS = Counter(
    "guetteur_consumer_gaps_total",
    "Times a partition was read again because the consumer skipped messages (see "
    "streams/continuity.py), by topic.",
    ["topic"],
)
ES_REQUEST_SECONDS = Histogram(
    "guetteur_elasticsearch_request_seconds",
    "Duration of Elasticsearch bulk requests, by operation.",
    ["operation"],
)
ES_REFUSED = Counter(
    "guetteur_elasticsearch_refused_total",
    "Documents Elasticsearch refused for good, by index kind (history, alerts).",
    ["kind"],
)
DETECTOR_STATES = Gauge(
    "guetteur_detector_states",
    "Keys with state kept by this worker, by detector.",
    ["detector"],
)
WORKER_UP = Gauge(
    "guetteur_worker_up",
    "1 while the worker runs (with its app id), for dashboards that outlive a scrape gap.",
    ["app_id"],
)
DETECTOR_ERRORS = Counter(
    "guetteur_detector_errors_total",
    "Events a detector failed on (a bug: the event is skipped for that detector), by detector.",
    ["detector"],
)
INTERNAL_UNDECODABLE = Counter(
    "guetteur_internal_undecodable_total",
    "Messages on an internal topic that could not be decoded (skipped; a bug or a stranger "
    "writing there), by topic.",
    ["topic"],
)

"""Every Prometheus metric of the worker, defined once: dashboards and rules use these names."""

from __future__ import annotations

from prometheus_client import Counter

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
HISTORY_DOCUMENTS = Counter(
    "guetteur_history_documents_total",
    "Access-history documents acknowledged by Elasticsearch.",
)
HISTORY_DUPLICATES = Counter(
    "guetteur_history_duplicates_total",
    "Events not written because their event_id is already in the history (replays, redeliveries).",
)
ES_RETRIES = Counter(
    "guetteur_elasticsearch_retries_total",
    "Elasticsearch calls retried after an error, by operation; a rising rate means an outage.",
    ["operation"],
)
CHECKPOINTS = Counter(
    "guetteur_checkpoints_total",
    "Signed chain-head checkpoints written to the checkpoint index.",
)
ALERT_FINDINGS = Counter(
    "guetteur_alert_findings_total",
    "Single-evidence alerts produced by the detectors (before merging into incidents).",
)
ALERTS = Counter(
    "guetteur_alerts_updated_total",
    "Incidents created or updated with new evidence, by rule and severity.",
    ["rule_id", "severity"],
)
DETECTOR_ERRORS = Counter(
    "guetteur_detector_errors_total",
    "Events a detector failed on (a bug: the event is skipped for that detector), by detector.",
    ["detector"],
)

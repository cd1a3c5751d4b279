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

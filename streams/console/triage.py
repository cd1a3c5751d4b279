"""Alert triage: acknowledge an incident, close it as a true or a false positive, with a comment.

The triage index holds each incident's status and every change (who, when, why). The status is
also copied into the incident's document in the alerts index, so Kibana shows it; the incidents
agent copies it again whenever it rewrites an incident with new evidence.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from streams.settings import Settings


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"


CLOSED = {Status.TRUE_POSITIVE, Status.FALSE_POSITIVE}
FIELDS = ("status", "by", "at", "comment")


def step(record: dict[str, Any]) -> dict[str, Any]:
    """The current triage step of a triage record (what the alerts index shows)."""
    return {key: record[key] for key in FIELDS}


class TriageError(ValueError):
    """A triage request that cannot be applied; the message says why."""


def current(client: Elasticsearch, settings: Settings, alert_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.get(index=settings.triage_index, id=alert_id)["_source"]
    except NotFoundError:
        return None
    return found


def change(
    client: Elasticsearch,
    settings: Settings,
    alert_id: str,
    status: Status,
    by: str,
    comment: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    if status is Status.OPEN:
        raise TriageError("an alert is reopened by acknowledging it again")
    if status in CLOSED and not comment.strip():
        raise TriageError("closing an alert needs a comment saying why")
    try:
        alert = dict(client.get(index=settings.alerts_index, id=alert_id))
    except NotFoundError:
        raise TriageError(f"no alert {alert_id}") from None
    at = (now or datetime.now(UTC)).isoformat()
    step = {"status": status.value, "by": by, "at": at, "comment": comment}
    previous = current(client, settings, alert_id)
    history = [*(previous or {}).get("history", []), step]
    record = {"alert_id": alert_id, **step, "history": history}
    client.index(index=settings.triage_index, id=alert_id, document=record, refresh="wait_for")
    _show_in_alert(client, settings, alert, step)
    return record


def _show_in_alert(
    client: Elasticsearch, settings: Settings, alert: dict[str, Any], step: dict[str, Any]
) -> None:
    """Rewrite the incident with its triage, at the same version (its evidence count)."""
    document = {**alert["_source"], "triage": step}
    client.index(
        index=settings.alerts_index,
        id=alert["_id"],
        document=document,
        version=document["event_count"],
        version_type="external_gte",
        refresh="wait_for",
    )


def statuses(client: Elasticsearch, settings: Settings, alert_ids: list[str]) -> dict[str, Any]:
    """Triage step per alert id (those that have one)."""
    if not alert_ids:
        return {}
    try:
        found = client.mget(index=settings.triage_index, ids=alert_ids)["docs"]
    except NotFoundError:
        return {}
    return {doc["_id"]: step(doc["_source"]) for doc in found if doc.get("found")}

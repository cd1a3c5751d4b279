"""Alert triage: acknowledge an incident, call it a true or a false positive, close it; each
decision with who, when and why.

Calling an incident a false positive, or closing it, resolves its page in Alertmanager at once,
and the worker's pager keeps it resolved when new evidence arrives (``ending_pages``).

The triage index holds each incident's status and every change (who, when, why). The status is
also copied into the incident's document in the alerts index, so Kibana shows it; the incidents
agent copies it again whenever it rewrites an incident with new evidence.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from elasticsearch import AsyncElasticsearch, Elasticsearch, NotFoundError

from detectors.alerts import Alert
from streams.paging import alertmanager_alert
from streams.settings import Settings

log = logging.getLogger(__name__)


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"
    CLOSED = "closed"  # handled: nothing more to do


# A decision that needs a reason.
DECIDED = {Status.TRUE_POSITIVE, Status.FALSE_POSITIVE, Status.CLOSED}
# Nothing for on-call to do any more: the page resolves at once, and new evidence for the
# incident does not ring again.
ENDS_PAGE = {Status.FALSE_POSITIVE, Status.CLOSED}
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
    if status in DECIDED and not comment.strip():
        raise TriageError(f"{status.value.replace('_', ' ')} needs a comment saying why")
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
    if status in ENDS_PAGE:
        return {**record, "page": _resolve_page(settings, alert["_source"], now)}
    return record


def _resolve_page(settings: Settings, source: dict[str, Any], now: datetime | None) -> str:
    """Tell Alertmanager the incident is over, now (not when its timer runs out). The triage
    is stored either way; the answer says whether the page was resolved."""
    if settings.page_severities == "off" or source.get("severity") not in settings.paged_severities:
        return "not paged"
    fields = {k: v for k, v in source.items() if k in Alert.model_fields}
    alert = Alert.model_validate(fields)
    moment = now or datetime.now(UTC)
    body = json.dumps([alertmanager_alert(alert, settings, moment, resolved=True)]).encode()
    url = f"{settings.alertmanager().rstrip('/')}/api/v2/alerts"
    if not url.startswith(("http://", "https://")):
        return "not resolved: GUETTEUR_ALERTMANAGER_URL must be an http(s) URL"
    request = urllib.request.Request(  # noqa: S310 - http(s) checked above
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - http(s) checked above
            return "resolved"
    except OSError as exc:  # URLError and HTTPError are OSErrors
        log.warning("page not resolved", extra={"alert.id": alert.alert_id, "error": str(exc)})
        return f"not resolved ({exc}); it resolves by itself when its timer runs out"


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


async def ending_pages(
    client: AsyncElasticsearch, settings: Settings, alert_ids: list[str]
) -> set[str]:
    """Of these incidents, those whose triage ended their page (for the worker's pager). If
    the triage index cannot be read, none: paging again is better than missing a page."""
    try:
        found = await client.mget(index=settings.triage_index, ids=alert_ids)
    except NotFoundError:
        return set()
    except Exception as exc:  # Elasticsearch down: page as if untriaged
        log.warning("triage unreadable; paging regardless", extra={"error": str(exc)[:200]})
        return set()
    ending = {status.value for status in ENDS_PAGE}
    return {d["_id"] for d in found["docs"] if d.get("found") and d["_source"]["status"] in ending}


def histories(
    client: Elasticsearch, settings: Settings, alert_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Every triage step (status, by, at, comment) per alert id, oldest first."""
    found = _records(client, settings, alert_ids)
    return {alert_id: list(record.get("history", [])) for alert_id, record in found.items()}


def statuses(client: Elasticsearch, settings: Settings, alert_ids: list[str]) -> dict[str, Any]:
    """Triage step per alert id (those that have one)."""
    return {
        alert_id: step(record) for alert_id, record in _records(client, settings, alert_ids).items()
    }


def _records(
    client: Elasticsearch, settings: Settings, alert_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The triage records of these alerts, by alert id (those that have one)."""
    if not alert_ids:
        return {}
    try:
        found = client.mget(index=settings.triage_index, ids=alert_ids)["docs"]
    except NotFoundError:
        return {}
    return {doc["_id"]: doc["_source"] for doc in found if doc.get("found")}

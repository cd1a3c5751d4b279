"""Paging on-call: incidents of the configured severities go to Alertmanager's v2 API.

Alertmanager identifies an alert by its labels, and ours carry the incident's ``alert_id``, so
a finding that keeps happening updates the same Alertmanager alert instead of ringing again.
Each push sets ``endsAt`` to now + ``GUETTEUR_PAGE_RESOLVE_SECONDS``: an incident that stops
getting new evidence resolves by itself. Grouping, silences, routing and repeat intervals stay
Alertmanager's job (``dashboards/alertmanager/alertmanager.yml``).

The pager runs as its own agent on the alerts topic: while Alertmanager is down it retries with
back-off, and only paging waits; ingestion and detection go on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp

from detectors.alerts import Alert
from streams import metrics
from streams.backoff import Backoff
from streams.settings import Settings

log = logging.getLogger(__name__)


def kibana_link(settings: Settings, alert_id: str) -> str:
    """The incident in Kibana's Discover, on the alerts data view shipped in dashboards/."""
    query = quote(f'alert_id:"{alert_id}"')
    return (
        f"{settings.kibana_url}/app/discover#/?_a=(dataSource:(dataViewId:guetteur-alerts,"
        f"type:dataView),query:(language:kuery,query:'{query}'))&_g=(time:(from:now-2y,to:now))"
    )


def alertmanager_alert(alert: Alert, settings: Settings, now: datetime) -> dict[str, Any]:
    labels = {
        "alertname": alert.rule_id,
        "rule_id": alert.rule_id,
        "severity": alert.severity.value,
        "alert_id": alert.alert_id,
        "practice_id": alert.practice_id or "",
        "actor_id": alert.actor_id or "",
        "source": "guetteur",
        "guetteur_app": settings.app_id,  # which deployment paged
    }
    link = kibana_link(settings, alert.alert_id)
    return {
        "labels": {k: v for k, v in labels.items() if v},  # Alertmanager drops empty labels
        "annotations": {
            "summary": alert.summary,
            "events": str(alert.event_count),
            "kibana": link,
        },
        "startsAt": alert.timestamp.astimezone(UTC).isoformat(),
        "endsAt": (now + timedelta(seconds=settings.page_resolve_seconds)).isoformat(),
        "generatorURL": link,
    }


class Pager:
    def __init__(self, settings: Settings, session: aiohttp.ClientSession, backoff: Backoff):
        self.settings = settings
        self.session = session
        self.backoff = backoff

    def wanted(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The latest version of each incident whose severity pages."""
        latest: dict[str, Alert] = {}
        for alert in alerts:
            if alert.severity.value in self.settings.paged_severities:
                latest[alert.alert_id] = alert
        return list(latest.values())

    async def page(self, alerts: Sequence[Alert]) -> int:
        wanted = self.wanted(alerts)
        if not wanted:
            return 0
        now = datetime.now(UTC)
        body = [alertmanager_alert(alert, self.settings, now) for alert in wanted]
        url = f"{self.settings.alertmanager().rstrip('/')}/api/v2/alerts"
        await self._deliver("alertmanager", url, body)
        if self.settings.page_webhook_url:
            payload = [alert.model_dump(mode="json") for alert in wanted]
            await self._deliver("webhook", self.settings.page_webhook_url, payload)
        return len(wanted)

    async def _deliver(self, receiver: str, url: str, body: Any) -> None:
        async def post() -> None:
            try:
                async with self.session.post(url, json=body) as response:
                    if response.status >= 300:
                        text = (await response.text())[:300]
                        raise RuntimeError(f"{receiver} answered {response.status}: {text}")
            except Exception:
                metrics.PAGES.labels(receiver, "retried").inc()
                raise

        await self.backoff.call(f"page {receiver}", post)
        metrics.PAGES.labels(receiver, "delivered").inc(len(body))
        log.info("paged", extra={"page.receiver": receiver, "page.alerts": len(body)})

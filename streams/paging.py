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
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from detectors.alerts import Alert
from streams import metrics
from streams.backoff import Backoff
from streams.settings import Settings

log = logging.getLogger(__name__)

# Refused incidents kept for ``Pager.retry_held``, at most.
HELD_MAX = 1000


def kibana_link(settings: Settings, alert_id: str) -> str:
    """The incident in Kibana's Discover, on the alerts data view shipped in dashboards/."""
    query = quote(f'alert_id:"{alert_id}"')
    return (
        f"{settings.kibana_url}/app/discover#/?_a=(dataSource:(dataViewId:guetteur-alerts,"
        f"type:dataView),query:(language:kuery,query:'{query}'))&_g=(time:(from:now-2y,to:now))"
    )


def alertmanager_alert(
    alert: Alert, settings: Settings, now: datetime, resolved: bool = False
) -> dict[str, Any]:
    """One incident as Alertmanager sees it.

    Alertmanager tells alerts apart by their labels, so the labels hold only what never changes
    for an incident (what its id is made of: rule and group; its rule's severity): an update
    whose earliest evidence moved (another practice, another actor) stays the same alert.
    ``startsAt`` is never after ``endsAt`` (Alertmanager refuses that), even for an incident
    stamped in the future by a producer's clock.
    """
    labels = {
        "alertname": alert.rule_id,
        "rule_id": alert.rule_id,
        "severity": alert.severity.value,
        "alert_id": alert.alert_id,
        "incident_group": alert.group,
        "source": "guetteur",
        "guetteur_app": settings.app_id,  # which deployment paged
    }
    link = kibana_link(settings, alert.alert_id)
    # Resolved now (an analyst closed it, or called it a false positive), else in a while.
    ends = now if resolved else now + timedelta(seconds=settings.page_resolve_seconds)
    annotations = {
        "summary": alert.summary,
        "events": str(alert.event_count),
        "kibana": link,
        "practice_id": alert.practice_id or "",
        "actor_id": alert.actor_id or "",
        "first_seen": alert.timestamp.astimezone(UTC).isoformat(),
    }
    return {
        "labels": {k: v for k, v in labels.items() if v},  # Alertmanager drops empty labels
        "annotations": {k: v for k, v in annotations.items() if v},
        "startsAt": min(alert.timestamp.astimezone(UTC), now).isoformat(),
        "endsAt": ends.isoformat(),
        "generatorURL": link,
    }


def _permanent(status: int) -> bool:
    """A 4xx that no retry can fix (the request itself is wrong); 408 and 429 are waits."""
    return 400 <= status < 500 and status not in (408, 429)


class RefusedError(Exception):
    """The receiver refused the request for good."""


class Pager:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        backoff: Backoff,
        held_file: Path | None = None,
        triaged: Callable[[list[str]], Awaitable[set[str]]] | None = None,
    ):
        """``held_file``: where refused incidents are kept, so a restart of the worker before
        the receiver is fixed does not forget them (their alerts-topic offsets are committed).
        ``triaged``: of these incident ids, those an analyst closed or called a false positive;
        new evidence for them keeps their page resolved instead of ringing again."""
        self.settings = settings
        self.triaged = triaged
        self.session = session
        self.backoff = backoff
        self.held_file = held_file
        self.held: dict[str, Alert] = _load_held(held_file)

    def wanted(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The latest version of each incident whose severity pages."""
        latest: dict[str, Alert] = {}
        for alert in alerts:
            if alert.severity.value in self.settings.paged_severities:
                latest[alert.alert_id] = alert
        return list(latest.values())

    async def page(self, alerts: Sequence[Alert]) -> int:
        """Page the wanted incidents; return how many were delivered.

        A receiver that answers a permanent 4xx is not retried: that would hold every later
        page behind one it will never take. The incidents it refused are counted, logged and
        held (``held``) for ``retry_held``, e.g. after the receiver's configuration is fixed.
        """
        wanted = self.wanted(alerts)
        if not wanted:
            return 0
        closed = await self.triaged([a.alert_id for a in wanted]) if self.triaged else set()
        delivered = await self._page_alertmanager(wanted, closed)
        ringing = [alert for alert in wanted if alert.alert_id not in closed]
        if self.settings.page_webhook_url and ringing:
            await self._page_webhook(ringing)
        return delivered

    async def page_safely(self, alerts: Sequence[Alert]) -> int:
        """``page``, but an error that is not the receiver's answer (a bug building the request,
        say) holds these incidents instead of escaping: Faust would acknowledge the batch unpaged,
        and a retry would fail the same way, holding every later page behind it."""
        try:
            return await self.page(alerts)
        except Exception as exc:
            for alert in self.wanted(alerts):
                self._hold("pager", alert, exc)
            return 0

    async def retry_held(self) -> int:
        held, self.held = list(self.held.values()), {}
        delivered = await self.page(held) if held else 0
        self._save_held()  # what was refused again is held again
        return delivered

    async def _page_alertmanager(self, wanted: list[Alert], closed: set[str]) -> int:
        now = datetime.now(UTC)
        url = f"{self.settings.alertmanager().rstrip('/')}/api/v2/alerts"
        body = [
            alertmanager_alert(alert, self.settings, now, resolved=alert.alert_id in closed)
            for alert in wanted
        ]
        try:
            await self._deliver("alertmanager", url, body)
            return len(wanted)
        except RefusedError:
            pass
        # Alertmanager refuses a whole request for one bad alert: find it, send the others.
        delivered = 0
        for alert, one in zip(wanted, body, strict=True):
            try:
                await self._deliver("alertmanager", url, [one])
                delivered += 1
            except RefusedError as refusal:
                self._hold("alertmanager", alert, refusal)
        return delivered

    async def _page_webhook(self, wanted: list[Alert]) -> None:
        assert self.settings.page_webhook_url is not None
        payload = [alert.model_dump(mode="json") for alert in wanted]
        try:
            await self._deliver("webhook", self.settings.page_webhook_url, payload)
        except RefusedError as refusal:
            for alert in wanted:
                self._hold("webhook", alert, refusal)

    def _hold(self, receiver: str, alert: Alert, refusal: Exception) -> None:
        metrics.PAGES.labels(receiver, "refused").inc()
        log.error(
            "page refused for good; not retried, held for a retry after the receiver is fixed",
            extra={"page.receiver": receiver, "alert.id": alert.alert_id, "error": str(refusal)},
        )
        self.held[alert.alert_id] = alert
        while len(self.held) > HELD_MAX:  # the oldest go first; they stay in the alerts index
            del self.held[next(iter(self.held))]
        self._save_held()

    def _save_held(self) -> None:
        if self.held_file is None:
            return
        lines = "".join(alert.model_dump_json() + "\n" for alert in self.held.values())
        partial = self.held_file.with_suffix(".tmp")
        partial.write_text(lines)
        partial.replace(self.held_file)  # never half a file

    async def _deliver(self, receiver: str, url: str, body: Any) -> None:
        """Deliver, retrying outages with back-off; raise ``RefusedError`` on a permanent 4xx."""

        async def post() -> RefusedError | None:
            try:
                async with self.session.post(url, json=body) as response:
                    if response.status < 300:
                        return None
                    text = (await response.text())[:300]
                    problem = f"{receiver} answered {response.status}: {text}"
                    if _permanent(response.status):
                        return RefusedError(problem)
                    raise RuntimeError(problem)
            except Exception:
                metrics.PAGES.labels(receiver, "retried").inc()
                raise

        refusal = await self.backoff.call(f"page {receiver}", post)
        if refusal is not None:
            raise refusal
        metrics.PAGES.labels(receiver, "delivered").inc(len(body))
        log.info("paged", extra={"page.receiver": receiver, "page.alerts": len(body)})


def _load_held(path: Path | None) -> dict[str, Alert]:
    """The incidents a previous run held; an unreadable line is logged and skipped, not fatal."""
    if path is None or not path.exists():
        return {}
    held: dict[str, Alert] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            alert = Alert.model_validate_json(line)
        except ValueError as exc:
            log.error(
                "held page unreadable; skipped (the incident stays in the alerts index)",
                extra={"page.held_file": str(path), "line": number, "error": str(exc)[:200]},
            )
            continue
        held[alert.alert_id] = alert
    if held:
        log.warning(
            "pages refused before the restart are held; send SIGHUP once the receiver is fixed",
            extra={"page.held": len(held)},
        )
    return held

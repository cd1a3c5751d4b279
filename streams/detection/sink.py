"""The alerts index: one document per incident, replaced as its evidence grows.

Written with the alert's evidence count as an external version, so an older state of an incident
(a replay, a slow retry) can never overwrite a newer one; retried with back-off like the history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError

from detectors.alerts import Alert
from streams import metrics
from streams.backoff import Backoff
from streams.settings import Settings

log = logging.getLogger(__name__)


def alert_document(alert: Alert) -> dict[str, Any]:
    document = alert.model_dump(mode="json")
    document["@timestamp"] = document["timestamp"]
    return document


class AlertSink:
    def __init__(self, client: AsyncElasticsearch, settings: Settings, backoff: Backoff):
        self.client = client
        self.index = settings.alerts_index
        self.triage_index = settings.triage_index
        self.backoff = backoff

    async def _triage(self, alert_ids: list[str]) -> dict[str, Any]:
        """Triage status per incident, copied into its document so a rewrite keeps it."""

        async def fetch() -> dict[str, Any]:
            try:
                found = await self.client.mget(index=self.triage_index, ids=alert_ids)
            except NotFoundError:
                return {}
            keys = ("status", "by", "at", "comment")
            return {
                d["_id"]: {k: d["_source"][k] for k in keys}
                for d in found["docs"]
                if d.get("found")
            }

        return await self.backoff.call("triage mget", fetch)

    async def write(self, alerts: Sequence[Alert]) -> None:
        operations: list[dict[str, Any]] = []
        triage = await self._triage([alert.alert_id for alert in alerts]) if alerts else {}
        for alert in alerts:
            operations.append(
                {
                    "index": {
                        "_index": self.index,
                        "_id": alert.alert_id,
                        "version": alert.event_count,
                        "version_type": "external_gte",
                    }
                }
            )
            document = alert_document(alert)
            if alert.alert_id in triage:
                document["triage"] = triage[alert.alert_id]
            operations.append(document)
        if not operations:
            return
        pending = operations
        attempt = 0
        while pending:
            with metrics.ES_REQUEST_SECONDS.labels("alerts bulk").time():
                response = await self.backoff.call(
                    "alerts bulk", partial(self.client.bulk, operations=pending)
                )
            retry: list[dict[str, Any]] = []
            for number, item in enumerate(response["items"]):
                status = item["index"]["status"]
                # 409: the index already holds this incident with more evidence: nothing to do.
                if status in (429, 500, 502, 503, 504):
                    retry += pending[2 * number : 2 * number + 2]
                elif status >= 300 and status != 409:
                    metrics.ES_REFUSED.labels("alerts").inc()
                    log.error(
                        "alert refused by Elasticsearch; it stays on the alerts topic",
                        extra={"alert.id": item["index"]["_id"], "error": str(item["index"])},
                    )
            pending = retry
            if retry:
                await self.backoff.wait(attempt, "alerts bulk items", f"{len(retry) // 2} alerts")
                attempt += 1

"""The security team's overview, in numbers the console charts: what Kibana's dashboard shows,
for a team that has no Kibana (or none it may give auditors).

Alerts per day by rule and severity, open against triaged, the actors and practices most
flagged, records exported or downloaded per day, HRi downloads per day, and the auditors' own
searches per day. Each is one Elasticsearch aggregation over a time range of event time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from streams.settings import Settings

HRI_SOURCE = "hri_gateway"


def overview(
    client: Elasticsearch, settings: Settings, start: datetime, end: datetime
) -> dict[str, Any]:
    window = {"gte": start.isoformat(), "lte": end.isoformat()}
    alerts = _aggregate(
        client,
        settings.alerts_index,
        {"range": {"timestamp": window}},
        {
            "per_day": {
                "date_histogram": {"field": "timestamp", "calendar_interval": "day"},
                "aggs": {"rules": {"terms": {"field": "rule_id", "size": 50}}},
            },
            "severities": {"terms": {"field": "severity", "size": 10}},
            "triaged": {"terms": {"field": "triage.status", "size": 10, "missing": "open"}},
            "actors": {"terms": {"field": "actor_id", "size": 10}},
            "practices": {"terms": {"field": "practice_id", "size": 10}},
        },
    )
    history = _aggregate(
        client,
        settings.history_index,
        {"range": {"@timestamp": window}},
        {
            "exported": {
                "filter": {"terms": {"event.action": ["export", "download"]}},
                "aggs": {"per_day": _daily({"records": {"sum": {"field": "health.record_count"}}})},
            },
            "hri": {
                "filter": {"term": {"event.provider": HRI_SOURCE}},
                "aggs": {"per_day": _daily({})},
            },
            "searches": {
                "filter": {"term": {"event.provider": "guetteur"}},
                "aggs": {"per_day": _daily({})},
            },
        },
    )
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "alerts_per_day": [
            {"day": b["key_as_string"][:10], "rule_id": r["key"], "alerts": r["doc_count"]}
            for b in _buckets(alerts, "per_day")
            for r in b["rules"]["buckets"]
        ],
        "alerts_by_severity": _counts(_buckets(alerts, "severities")),
        "alerts_by_triage": _counts(_buckets(alerts, "triaged")),
        "top_actors": _counts(_buckets(alerts, "actors")),
        "top_practices": _counts(_buckets(alerts, "practices")),
        "records_exported_per_day": [
            {"day": b["key_as_string"][:10], "records": int(b["records"]["value"])}
            for b in _nested(history, "exported")
        ],
        "hri_downloads_per_day": _daily_counts(_nested(history, "hri")),
        "auditor_searches_per_day": _daily_counts(_nested(history, "searches")),
    }


def _daily(aggs: dict[str, Any]) -> dict[str, Any]:
    daily: dict[str, Any] = {"date_histogram": {"field": "@timestamp", "calendar_interval": "day"}}
    if aggs:
        daily["aggs"] = aggs
    return daily


def _aggregate(
    client: Elasticsearch, index: str, query: dict[str, Any], aggs: dict[str, Any]
) -> dict[str, Any]:
    try:
        response = client.search(index=index, size=0, query=query, aggs=aggs)
    except NotFoundError:
        return {}
    found: dict[str, Any] = response.get("aggregations", {})
    return found


def _buckets(aggregations: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(aggregations.get(name, {}).get("buckets", []))


def _nested(aggregations: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return list(aggregations.get(name, {}).get("per_day", {}).get("buckets", []))


def _counts(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"key": b["key"], "count": b["doc_count"]} for b in buckets]


def _daily_counts(buckets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"day": b["key_as_string"][:10], "count": b["doc_count"]} for b in buckets]

"""Small things several tests need: a minimal valid event, free local ports."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

# The smallest event the contract accepts: every required field, nothing else.
MINIMAL_EVENT: dict[str, Any] = {
    "event_id": "e-1",
    "timestamp": "2026-11-16T10:00:00+01:00",
    "source": "practice_app",
    "action": "view",
    "actor": {"id": "dr-martin", "role": "practitioner"},
}


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on right now (all held at once, so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def stored_history(client: Any, settings: Any, ids: list[str] | None = None) -> dict[str, Any]:
    """``event.id`` -> stored source, read through the history alias (all monthly indices)."""
    from elasticsearch import NotFoundError

    query = {"ids": {"values": ids}} if ids is not None else {"match_all": {}}
    try:
        client.indices.refresh(index=settings.history_index)
        hits = client.search(index=settings.history_index, size=10_000, query=query)
    except NotFoundError:
        return {}
    return {hit["_id"]: hit["_source"] for hit in hits["hits"]["hits"]}


def stored_alerts(client: Any, settings: Any) -> dict[str, Any]:
    """``alert_id`` -> stored incident, from the alerts index (empty until it exists)."""
    from elasticsearch import NotFoundError

    try:
        client.indices.refresh(index=settings.alerts_index)
        hits = client.search(index=settings.alerts_index, size=10_000)
    except NotFoundError:
        return {}
    return {hit["_id"]: hit["_source"] for hit in hits["hits"]["hits"]}


def paged(alertmanager: str, app_id: str) -> list[dict[str, Any]]:
    """This worker's active pages: the shared Alertmanager also holds other tests' and demos'."""
    matcher = urllib.parse.quote(f'guetteur_app="{app_id}"')
    url = f"{alertmanager}/api/v2/alerts?filter={matcher}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return list(json.load(answer))


def paged_ids(alertmanager: str, app_id: str) -> set[str]:
    return {alert["labels"]["alert_id"] for alert in paged(alertmanager, app_id)}


def wait_until(done: Callable[[], bool], seconds: float = 60) -> None:
    """Poll ``done`` each second; fail the test when ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(1)

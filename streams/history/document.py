"""An accepted event as the history stores it: ECS field names, patient id pseudonymised.

The event arrives already pseudonymised (``streams.pseudonym.pseudonymise``, applied once at
ingestion for everything downstream): its ``patient_id`` is the keyed pseudonym and is stored as
``health.patient.pseudonym``. Empty fields are left out, so a document shows what the producer
said and nothing it did not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detectors.models import AccessEvent
from streams.settings import Settings


def history_document(event: AccessEvent, ingested: datetime) -> dict[str, Any]:
    data = event.model_dump(mode="json", exclude_none=True)
    actor = data["actor"]
    document: dict[str, Any] = {
        "@timestamp": data["timestamp"],
        "event": {
            "id": event.event_id,
            "action": data["action"],
            "outcome": data["outcome"],
            "provider": event.source,
            "ingested": ingested.astimezone(UTC).isoformat(),
        },
        "user": {"id": actor["id"], "roles": [actor["role"]]},
    }
    source = _pruned({"ip": actor.get("ip"), "geo": {"country_iso_code": actor.get("country")}})
    if source:
        document["source"] = source
    patient = {"pseudonym": event.patient_id} if event.patient_id is not None else None
    health = {
        "actor": {"organization": actor.get("organization")},
        "practice": {"id": data.get("practice_id")},
        "patient": patient,
        "data_category": data.get("data_category"),
        "record_count": data["record_count"],
        "session": {"id": data.get("session_id")},
        "ticket": {"id": data.get("ticket_id")},
        "automated": data["automated"],
        "purpose": data.get("purpose"),
        "export": {
            "destination": data.get("destination"),
            "fields": data.get("fields"),
            "authorization_ref": data.get("authorization_ref"),
        },
        "consent": data.get("consent"),
        "attributes": data.get("attributes"),
    }
    document["health"] = _pruned(health)
    return document


def _pruned(value: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` and objects left empty, recursively (never inside ``attributes``)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict) and key != "attributes":
            item = _pruned(item)
            if not item:
                continue
        if item is not None:
            out[key] = item
    return out


def month_index(settings: Settings, event: AccessEvent) -> str:
    """The monthly index an event belongs to, by its event time in UTC."""
    moment = event.timestamp.astimezone(UTC)
    return settings.history_month_index(moment.year, moment.month)

"""An accepted event as the history stores it: ECS field names, patient id pseudonymised.

The event arrives already pseudonymised (``streams.pseudonym.pseudonymise``, applied once at
ingestion for everything downstream): its ``patient_id`` is the keyed pseudonym and is stored as
``health.patient.pseudonym``. Empty fields are left out, so a document shows what the producer
said and nothing it did not.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from detectors.models import AccessEvent
from streams.settings import Settings


def history_document(
    event: AccessEvent, ingested: datetime, fingerprints: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``fingerprints`` (key id -> fingerprint, from the pseudonymisation keyring) lets the
    document name the key its pseudonym was made with, so a search under another key is
    refused instead of answering "no access" (``streams.audit.keyring``)."""
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
    source = _present(ip=actor.get("ip"), geo=_present(country_iso_code=actor.get("country")))
    if source:
        document["source"] = source
    document["health"] = _present(
        actor=_present(organization=actor.get("organization")),
        practice=_present(id=data.get("practice_id")),
        patient=_patient(event.patient_id, fingerprints or {}),
        data_category=data.get("data_category"),
        record_count=data["record_count"],
        session=_present(id=data.get("session_id")),
        ticket=_present(id=data.get("ticket_id")),
        automated=data["automated"],
        purpose=data.get("purpose"),
        export=_present(
            destination=data.get("destination"),
            fields=data.get("fields"),
            authorization_ref=data.get("authorization_ref"),
        ),
        consent=data.get("consent") or None,  # its fields are values, never objects
        attributes=data.get("attributes"),  # as minimised at ingestion, even empty
    )
    return document


def _patient(pseudonym: str | None, fingerprints: Mapping[str, str]) -> dict[str, Any] | None:
    if pseudonym is None:
        return None
    key_id = pseudonym.partition(":")[0]
    key = _present(id=key_id, fingerprint=fingerprints.get(key_id))
    return {"pseudonym": pseudonym, "key": key}


def _present(**fields: Any) -> dict[str, Any] | None:
    """The fields that have a value; None if none has (the object is then left out too).
    Built directly, field by field: a generic recursive pruning cost more than the rest."""
    present = {key: value for key, value in fields.items() if value is not None}
    return present or None


def month_index(settings: Settings, event: AccessEvent) -> str:
    """The monthly index an event belongs to, by its event time in UTC."""
    moment = event.timestamp.astimezone(UTC)
    return settings.history_month_index(moment.year, moment.month)

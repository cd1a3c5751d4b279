"""Watching the watchers: every search and report is itself an access to health data.

It is written as an access event (source ``guetteur``, the auditor as actor, the filters with
patients as pseudonyms, the number of results) and goes through the same pipeline as any other:
validated, pseudonymised, chained in the history, seen by the detectors.
"""

from __future__ import annotations

import getpass
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from streams.audit.query import Filters
from streams.producer import publish
from streams.settings import Settings


def auditor_name(settings: Settings, given: str | None = None) -> str:
    return given or settings.auditor or getpass.getuser()


def audit_event(
    auditor: str,
    kind: str,
    filters: Filters,
    results: int,
    patient_raw: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"guetteur-audit-{uuid.uuid4()}",
        "timestamp": (now or datetime.now(UTC)).isoformat(),
        "source": "guetteur",
        "action": "search",
        "actor": {"id": auditor, "role": "admin"},
        "record_count": results,
        "purpose": "other",
        "attributes": {"guetteur_audit": {"kind": kind, "filters": filters.described()}},
    }
    if patient_raw is not None:
        # Raw here, like any producer's event: ingestion pseudonymises it, and the search then
        # shows in the patient's own access report.
        event["patient_id"] = patient_raw
    if filters.practice:
        event["practice_id"] = filters.practice
    return event


def record(settings: Settings, event: dict[str, Any]) -> None:
    publish(settings, settings.topic_events, [json.dumps(event).encode()])

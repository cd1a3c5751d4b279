"""Watching the watchers: every search, report and pseudonym look-up is itself an access to
health data, recorded under a proven identity before any data is returned.

It is written as an access event (source ``guetteur``) and goes through the same pipeline as any
other: validated, pseudonymised, minimised, chained in the history, seen by the detectors. Who
looked is what the caller proved, not what it claimed:
- in the console, the token's user and role;
- on the command line, the operating-system user and the role configured for this machine
  (``GUETTEUR_AUDITOR_ROLE``); ``--as`` (or ``GUETTEUR_AUDITOR``) is recorded beside it as a
  stated purpose ("on behalf of the DPO"), never as the identity.

Fail-closed: the record is checked against the contract and acknowledged by Kafka first; if
either fails, ``AuditNotRecordedError`` is raised and the caller returns an error, not data (a
search whose record the worker would refuse, e.g. a 200-character practice id, is refused here).
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka.errors import KafkaError

from streams.audit.query import Filters
from streams.decode import Rejected, decode
from streams.producer import publish
from streams.settings import Settings


class AuditNotRecordedError(Exception):
    """The look could not be recorded, so its data is not returned. ``invalid``: the request
    itself makes an unrecordable record (the caller's to fix), else the recording failed."""

    def __init__(self, message: str, invalid: bool):
        super().__init__(message)
        self.invalid = invalid


@dataclass(frozen=True)
class Looker:
    """Who looks at the data, as proven, and with which role."""

    name: str
    role: str  # the Guetteur role: auditor, analyst or admin
    proven_by: str  # "token" (console) or "os_user" (command line)
    stated_as: str | None = None  # a stated purpose or principal: recorded, not trusted


def cli_looker(settings: Settings, stated_as: str | None = None) -> Looker:
    return Looker(
        name=getpass.getuser(),
        role=settings.auditor_role,
        proven_by="os_user",
        stated_as=stated_as or settings.auditor,
    )


def audit_event(
    looker: Looker,
    kind: str,
    filters: Filters,
    results: int,
    index: str | None,
    patient_raw: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    looked: dict[str, Any] = {
        "kind": kind,
        "index": index,
        "filters": filters.described(),
        "role": looker.role,
        "proven_by": looker.proven_by,
    }
    if looker.stated_as:
        looked["stated_as"] = looker.stated_as
    event: dict[str, Any] = {
        "event_id": f"guetteur-audit-{uuid.uuid4()}",
        "timestamp": (now or datetime.now(UTC)).isoformat(),
        "source": "guetteur",
        "action": "search",
        # The contract has no auditor role: "admin" (who operates the tool) is the closest;
        # the Guetteur role is in the record itself, and reports show that one.
        "actor": {"id": looker.name, "role": "admin"},
        "record_count": results,
        "purpose": "other",
        "attributes": {"guetteur_audit": looked},
    }
    if patient_raw is not None:
        # Raw here, like any producer's event: ingestion pseudonymises it, and the look then
        # shows in the patient's own access report.
        event["patient_id"] = patient_raw
    if filters.practice:
        event["practice_id"] = filters.practice
    return event


def record(settings: Settings, event: dict[str, Any]) -> None:
    """Valid for the contract and acknowledged by Kafka within ``audit_record_seconds``, or
    ``AuditNotRecordedError``."""
    payload = json.dumps(event).encode()
    verdict = decode(payload, bounds=settings.event_time_bounds())
    if isinstance(verdict, Rejected):
        raise AuditNotRecordedError(
            f"this look cannot be recorded ({verdict.detail}), so nothing is returned; "
            "correct the request",
            invalid=True,
        )
    try:
        publish(settings, settings.topic_events, [payload], timeout=settings.audit_record_seconds)
    except (KafkaError, OSError) as exc:
        raise AuditNotRecordedError(
            f"this look cannot be recorded (Kafka: {exc}), so nothing is returned; check "
            "GUETTEUR_KAFKA_BOOTSTRAP or start the local stack with `guetteur stack up`",
            invalid=False,
        ) from None

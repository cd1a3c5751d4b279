"""The v1 access event of the contract (``shared/contract``) as pydantic models.

Strict where the contract is strict: unknown fields, a timestamp without an offset, an unknown
action or role, a negative count or an over-long string are rejected with the field's path, so a
producer bug lands in the dead-letter topic with a reason instead of in the audit trail.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
)


class Action(StrEnum):
    VIEW = "view"
    SEARCH = "search"
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"
    DOWNLOAD = "download"
    PRINT = "print"
    COPY = "copy"
    SCREENSHOT = "screenshot"
    RECORD = "record"
    LOGIN = "login"
    LOGOUT = "logout"
    SESSION_START = "session_start"
    SESSION_END = "session_end"
    CONSENT_GRANTED = "consent_granted"
    CONSENT_REVOKED = "consent_revoked"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class Role(StrEnum):
    PRACTITIONER = "practitioner"
    SECRETARY = "secretary"
    SUPPORT_AGENT = "support_agent"
    ADMIN = "admin"
    SERVICE = "service"
    PATIENT = "patient"


class DataCategory(StrEnum):
    IDENTITY = "identity"
    ADMINISTRATIVE = "administrative"
    APPOINTMENT = "appointment"
    MEDICAL = "medical"
    PRESCRIPTION = "prescription"
    REIMBURSEMENT = "reimbursement"
    BILLING = "billing"
    DOCUMENT = "document"


class Purpose(StrEnum):
    CARE = "care"
    SUPPORT = "support"
    BILLING = "billing"
    RESEARCH = "research"
    MIGRATION = "migration"
    OTHER = "other"


class ConsentMode(StrEnum):
    VIEW_ONLY = "view_only"
    FULL = "full"


def _ip_address(value: str) -> str:
    ipaddress.ip_address(value)  # raises ValueError with a clear message
    return value


Id128 = Annotated[str, Field(min_length=1, max_length=128)]
Text128 = Annotated[str, Field(max_length=128)]
IpAddress = Annotated[
    str,
    AfterValidator(_ip_address),
    WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
]


class _ContractModel(BaseModel):
    """Strict like the contract: unknown fields are errors, JSON types are not coerced.

    Explicit ``null``s, which the contract also forbids, are refused by ``streams.decode``
    before validation (a model-level "before" hook would take pydantic out of JSON mode).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Actor(_ContractModel):
    id: Id128
    role: Role
    organization: Text128 | None = None
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None
    ip: IpAddress | None = None


class Consent(_ContractModel):
    scope: list[DataCategory] | None = None
    mode: ConsentMode | None = None
    expires_at: AwareDatetime | None = None


class AccessEvent(_ContractModel):
    """One access to health data (or a session/consent lifecycle step), as a producer sent it."""

    event_id: Id128
    timestamp: AwareDatetime
    source: Annotated[str, Field(min_length=1, max_length=64)]
    action: Action
    outcome: Outcome = Outcome.SUCCESS
    actor: Actor
    practice_id: Text128 | None = None
    patient_id: Text128 | None = None
    data_category: DataCategory | None = None
    record_count: Annotated[int, Field(ge=0)] = 1
    session_id: Text128 | None = None
    ticket_id: Text128 | None = None
    automated: bool = False
    purpose: Purpose | None = None
    destination: Annotated[str, Field(max_length=512)] | None = None
    fields: Annotated[list[Text128], Field(max_length=512)] | None = None
    authorization_ref: Text128 | None = None
    consent: Consent | None = None
    attributes: dict[str, Any] | None = None


def replaced(event: AccessEvent, **changes: Any) -> AccessEvent:
    """The event with some fields changed, not validated again: for values we computed
    ourselves (a pseudonym), on the hot path, where ``model_copy`` cost as much as parsing."""
    copy = AccessEvent.__new__(AccessEvent)
    setattr_ = object.__setattr__
    setattr_(copy, "__dict__", {**event.__dict__, **changes})
    setattr_(copy, "__pydantic_fields_set__", event.model_fields_set | changes.keys())
    setattr_(copy, "__pydantic_extra__", None)  # extra="forbid"
    setattr_(copy, "__pydantic_private__", None)
    return copy

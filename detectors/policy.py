"""The detection policy: every threshold, window, allowlist and permission, with defaults.

Policy is data, not code: a deployment writes a TOML file with only what it changes, and every
value below is what it gets otherwise. The defaults are what the vendor's published promises
imply (``shared/contract/README.md``, "Default policy"). An unknown key or a bad value is an
error naming the key's path, so a typo cannot silently turn a rule off.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adapters.table import MappingPolicy
from detectors.alerts import Severity
from detectors.models import Action, DataCategory, Purpose, Role

EEA = [
    # EU member states
    *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"),
    *("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"),
    # EEA, outside the EU
    *("IS", "LI", "NO"),
]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
Positive = Annotated[float, Field(gt=0)]


class PolicyError(ValueError):
    """The policy file is unreadable or invalid; the message names each bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertPolicy(_Section):
    group_minutes: Positive = Field(
        default=60,
        description="Findings of one rule about one actor (or session) within this many minutes "
        "form one alert, updated with each new piece of evidence.",
    )
    lateness_seconds: Annotated[float, Field(ge=0)] = Field(
        default=60,
        description="How late (in event time) an event may arrive and still count: decisions "
        "that depend on later events wait this long past their window.",
    )
    max_evidence: Annotated[int, Field(ge=1)] = Field(
        default=500, description="At most this many event ids are listed in one alert."
    )

    @property
    def group_window(self) -> timedelta:
        return timedelta(minutes=self.group_minutes)

    @property
    def lateness(self) -> timedelta:
        return timedelta(seconds=self.lateness_seconds)


class SupportPolicy(_Section):
    allowed_countries: list[Country] = Field(
        default_factory=lambda: [*EEA, "MA"],
        description="Countries support staff may act from (the EEA, plus Morocco under standard "
        "contractual clauses); anything else is an undeclared transfer.",
    )
    consent_roles: list[Role] = Field(
        default_factory=lambda: [Role.PRACTITIONER, Role.SECRETARY],
        description="Roles whose consent_granted opens a support session.",
    )
    clock_skew_seconds: Annotated[float, Field(ge=0)] = Field(
        default=10,
        description="A consent stamped this many seconds after an access still covers it "
        "(support tool and practice software clocks differ).",
    )
    view_actions: list[Action] = Field(
        default_factory=lambda: [Action.VIEW, Action.SEARCH],
        description="The only actions support may take on patient data.",
    )

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_seconds)


ALL_CATEGORIES = list(DataCategory)


class RolePolicy(_Section):
    """Which data categories each role may touch, outside support sessions (need to know)."""

    practitioner: list[DataCategory] = Field(default_factory=lambda: list(ALL_CATEGORIES))
    secretary: list[DataCategory] = Field(
        default_factory=lambda: [
            DataCategory.IDENTITY,
            DataCategory.ADMINISTRATIVE,
            DataCategory.APPOINTMENT,
            DataCategory.BILLING,
            DataCategory.DOCUMENT,
        ]
    )
    admin: list[DataCategory] = Field(
        default_factory=lambda: [
            DataCategory.IDENTITY,
            DataCategory.ADMINISTRATIVE,
            DataCategory.BILLING,
        ]
    )
    patient: list[DataCategory] = Field(default_factory=lambda: [DataCategory.APPOINTMENT])
    service: list[DataCategory] = Field(
        default_factory=list,
        description="Categories any service account may touch; named ones get more below.",
    )
    services: dict[str, list[DataCategory]] = Field(
        default_factory=lambda: {"svc-reminders": [DataCategory.APPOINTMENT]},
        description="Per service account id: the categories its declared purpose needs.",
    )

    def allowed(self, role: Role, actor_id: str) -> set[DataCategory]:
        if role is Role.SUPPORT_AGENT:
            return set(ALL_CATEGORIES)  # support is governed by consent, not by role
        granted = set(getattr(self, role.value))
        if role is Role.SERVICE:
            granted |= set(self.services.get(actor_id, []))
        return granted


class CarePolicy(_Section):
    categories: list[DataCategory] = Field(
        default_factory=lambda: [DataCategory.MEDICAL, DataCategory.PRESCRIPTION],
        description="Reading these needs a care relationship with the patient.",
    )
    roles: list[Role] = Field(default_factory=lambda: [Role.PRACTITIONER, Role.SECRETARY])
    days_before: Annotated[float, Field(ge=0)] = 30
    days_after: Annotated[float, Field(ge=0)] = 1
    appointment_actions: list[Action] = Field(
        default_factory=lambda: [Action.CREATE, Action.UPDATE],
        description="Actions on appointment data that establish a care relationship.",
    )
    consultation_sources: list[str] = Field(
        default_factory=lambda: ["teleconsultation"],
        description="Sources whose events for the patient are consultations in themselves.",
    )

    @property
    def before(self) -> timedelta:
        return timedelta(days=self.days_before)

    @property
    def after(self) -> timedelta:
        return timedelta(days=self.days_after)


class ExportPolicy(_Section):
    actions: list[Action] = Field(default_factory=lambda: [Action.EXPORT, Action.DOWNLOAD])
    volume_floor: Annotated[int, Field(ge=0)] = Field(
        default=500, description="Never fire below this many records in the window."
    )
    volume_window_hours: Positive = 24
    baseline_days: Annotated[int, Field(ge=1)] = 30
    baseline_multiplier: Positive = Field(
        default=10, description="Fire above this multiple of the actor's median daily volume."
    )
    destinations: dict[Purpose | str, list[str]] = Field(
        default_factory=dict,
        description="Per purpose (or 'any'): allowed destinations, exact or a prefix ending "
        "in '*'. Empty by default: deny until the deployment declares its partners.",
    )
    direct_identifiers: list[str] = Field(
        default_factory=lambda: [
            "name",
            "first_name",
            "last_name",
            "nir",
            "social_security_number",
            "email",
            "phone",
            "address",
        ]
    )
    quasi_identifiers: list[str] = Field(
        default_factory=lambda: ["birth_date", "postcode", "gender", "exact_dates"]
    )
    persistent_keys: list[str] = Field(
        default_factory=lambda: ["patient_key", "patient_id", "pseudonym"]
    )
    pseudonymised_purposes: list[Purpose] = Field(
        default_factory=lambda: [Purpose.RESEARCH, Purpose.OTHER],
        description="Exports for these purposes are meant to be pseudonymised (also any export "
        "with attributes.pseudonymised = true): their fields are checked for re-identification.",
    )
    linkage_days: Annotated[int, Field(ge=1)] = Field(
        default=365,
        description="Exports of one patient key from two practices within this many days are "
        "cross-practice linkable.",
    )

    @property
    def volume_window(self) -> timedelta:
        return timedelta(hours=self.volume_window_hours)

    def destination_allowed(self, purpose: str | None, destination: str) -> bool:
        allowed = [
            *self.destinations.get(purpose or "other", []),
            *self.destinations.get("any", []),
        ]
        return any(
            destination.startswith(entry[:-1]) if entry.endswith("*") else destination == entry
            for entry in allowed
        )


class HriPolicy(_Section):
    max_patients: Annotated[int, Field(ge=1)] = Field(
        default=20, description="More distinct patients than this per actor per window fires."
    )
    window_minutes: Positive = 60
    view_before_minutes: Positive = Field(
        default=10,
        description="A download needs a view of the same patient by the same actor this recently.",
    )
    source: str = "hri_gateway"

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)

    @property
    def view_before(self) -> timedelta:
        return timedelta(minutes=self.view_before_minutes)


class PrivacyPolicy(_Section):
    """What of a producer's free text may be stored (``streams.minimise``)."""

    attributes: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "*": ["pseudonymised", "fhir", "atna"],
            "guetteur": ["guetteur_audit"],
        },
        description="Per source (or '*' for all): the attribute keys kept; every other "
        "attribute is dropped at ingestion. By default only 'pseudonymised' (read by export "
        "detection), the codes a FHIR or ATNA record was mapped from ('fhir', 'atna') and "
        "Guetteur's own audit record.",
    )
    patient_id_patterns: list[str] = Field(
        default_factory=list,
        description="Regular expressions of this deployment's patient ids (e.g. 'P-[0-9]{6}'), "
        "pseudonymised wherever they appear in free text, besides the event's own patient_id.",
    )

    @field_validator("patient_id_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
            if compiled.groups:
                raise ValueError(f"{pattern!r}: use (?:...) instead of capturing groups")
            if compiled.match(""):
                raise ValueError(f"{pattern!r} matches the empty string")
        return patterns


class Policy(_Section):
    alerts: AlertPolicy = Field(default_factory=AlertPolicy)
    support: SupportPolicy = Field(default_factory=SupportPolicy)
    roles: RolePolicy = Field(default_factory=RolePolicy)
    care: CarePolicy = Field(default_factory=CarePolicy)
    export: ExportPolicy = Field(default_factory=ExportPolicy)
    hri: HriPolicy = Field(default_factory=HriPolicy)
    privacy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)
    # How FHIR AuditEvents and ATNA messages become access events (adapters/table.py).
    mapping: MappingPolicy = Field(default_factory=MappingPolicy)
    severity: dict[str, Severity] = Field(
        default_factory=dict,
        description="Per rule_id: a severity overriding the rule's own (low..critical).",
    )

    @field_validator("severity")
    @classmethod
    def _known_rules(cls, severity: dict[str, Severity]) -> dict[str, Severity]:
        """A misspelt rule id would make its escalation silently never apply."""
        from detectors.registry import RULE_IDS  # the registry imports this module

        for rule_id in severity:
            if rule_id not in RULE_IDS:
                close = difflib.get_close_matches(rule_id, RULE_IDS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" ({', '.join(RULE_IDS)})"
                raise ValueError(f"{rule_id!r} is not a rule id{hint}")
        return severity


def parse_policy(data: dict[str, Any], source: str = "policy") -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        ]
        raise PolicyError(f"{source}: " + "; ".join(problems)) from None


def load_policy(path: Path | None) -> Policy:
    """The policy in ``path`` (TOML) over the defaults; the defaults alone if ``path`` is None."""
    if path is None:
        return Policy()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    return parse_policy(data, str(path))

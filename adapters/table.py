"""What a foreign audit record's codes mean in the contract: configuration, with defaults.

Every table is keyed by code, either ``code`` alone or ``system|code`` when two code systems
share a code (the system as the record writes it: a FHIR system URI, or an ATNA
``codeSystemName`` such as ``DCM``). ``system|code`` wins over ``code``. A code found in no table
is never guessed: the record is refused, with the element and the codes it carried, so the
deployment adds the row it needs (``[mapping.roles]`` in the policy file, for instance).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from detectors.models import Action, DataCategory, Purpose, Role

V = TypeVar("V")
Code = Annotated[str, Field(min_length=1, max_length=256)]

# The restful interactions of a FHIR server (http://hl7.org/fhir/restful-interaction), the DICOM
# event ids (DCM, PS3.16 CID 400/401) and the IHE transactions that say what happened.
DEFAULT_ACTIONS: dict[str, Action] = {
    "read": Action.VIEW,
    "vread": Action.VIEW,
    "history": Action.VIEW,
    "history-instance": Action.VIEW,
    "history-type": Action.VIEW,
    "history-system": Action.VIEW,
    "search": Action.SEARCH,
    "search-type": Action.SEARCH,
    "search-system": Action.SEARCH,
    "create": Action.CREATE,
    "update": Action.UPDATE,
    "patch": Action.UPDATE,
    "delete": Action.DELETE,
    "110112": Action.SEARCH,  # DCM Query
    "110106": Action.EXPORT,  # DCM Export
    "110107": Action.CREATE,  # DCM Import
    "110105": Action.DELETE,  # DCM DICOM Study Deleted
    "110122": Action.LOGIN,  # DCM Login
    "110123": Action.LOGOUT,  # DCM Logout
    "ITI-9": Action.SEARCH,  # PIX Query
    "ITI-21": Action.SEARCH,  # Patient Demographics Query
    "ITI-78": Action.SEARCH,  # Mobile Patient Demographics Query
    "ITI-18": Action.SEARCH,  # Registry Stored Query
    "ITI-43": Action.VIEW,  # Retrieve Document Set
    "ITI-68": Action.VIEW,  # Retrieve Document
}

# Event types whose action is the record's CRUDE action code (C, R, U, D), not the type itself.
DEFAULT_RECORD_EVENTS = ["rest", "110110", "110103", "110109", "110111"]

DEFAULT_RECORD_ACTIONS: dict[str, Action] = {
    "C": Action.CREATE,
    "R": Action.VIEW,
    "U": Action.UPDATE,
    "D": Action.DELETE,
}

DEFAULT_ROLES: dict[str, Role] = {
    "PROV": Role.PRACTITIONER,  # v3-RoleClass healthcare provider
    "PAT": Role.PATIENT,  # v3-RoleClass patient
    "158965000": Role.PRACTITIONER,  # SNOMED CT medical practitioner
    "309343006": Role.PRACTITIONER,  # SNOMED CT physician
    "223366009": Role.PRACTITIONER,  # SNOMED CT healthcare professional
    "224535009": Role.PRACTITIONER,  # SNOMED CT registered nurse
    "394572006": Role.SECRETARY,  # SNOMED CT medical secretary
    "159561009": Role.SECRETARY,  # SNOMED CT receptionist
    "110150": Role.SERVICE,  # DCM Application
}

# Agent types that name software or an endpoint of a transfer, not the person who asked.
DEFAULT_MACHINE_CODES = ["110150"]  # DCM Application (110152/110153 are also people)

# An agent named by a reference ("Practitioner/12") has the role its resource type says.
DEFAULT_REFERENCE_ROLES: dict[str, Role] = {
    "Practitioner": Role.PRACTITIONER,
    "PractitionerRole": Role.PRACTITIONER,
    "Patient": Role.PATIENT,
    "Device": Role.SERVICE,
}

_MEDICAL = [
    *("Observation", "Condition", "Procedure", "DiagnosticReport", "AllergyIntolerance"),
    *("Immunization", "CarePlan", "ClinicalImpression", "FamilyMemberHistory", "ImagingStudy"),
    *("Specimen", "ServiceRequest", "QuestionnaireResponse", "RiskAssessment", "DetectedIssue"),
    *("NutritionOrder", "Goal", "Media", "BodyStructure", "MolecularSequence", "Encounter"),
]
DEFAULT_CATEGORIES: dict[str, DataCategory] = {
    **dict.fromkeys(("Patient", "Person", "RelatedPerson"), DataCategory.IDENTITY),
    **dict.fromkeys(_MEDICAL, DataCategory.MEDICAL),
    **dict.fromkeys(
        ("MedicationRequest", "MedicationDispense", "MedicationStatement"),
        DataCategory.PRESCRIPTION,
    ),
    "MedicationAdministration": DataCategory.PRESCRIPTION,
    **dict.fromkeys(
        ("Appointment", "AppointmentResponse", "Schedule", "Slot"), DataCategory.APPOINTMENT
    ),
    **dict.fromkeys(
        ("Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse", "Claim"),
        DataCategory.REIMBURSEMENT,
    ),
    **dict.fromkeys(("ClaimResponse", "ExplanationOfBenefit"), DataCategory.REIMBURSEMENT),
    **dict.fromkeys(
        ("Account", "ChargeItem", "Invoice", "PaymentNotice", "PaymentReconciliation"),
        DataCategory.BILLING,
    ),
    **dict.fromkeys(
        ("DocumentReference", "DocumentManifest", "Composition", "Binary"), DataCategory.DOCUMENT
    ),
    "Consent": DataCategory.ADMINISTRATIVE,
    "EpisodeOfCare": DataCategory.ADMINISTRATIVE,
    # ATNA participant object id types (DCM, RFC 3881, IHE XDS)
    "110180": DataCategory.MEDICAL,  # DCM Study Instance UID
    "110181": DataCategory.MEDICAL,  # DCM SOP Class UID
    "9": DataCategory.DOCUMENT,  # RFC 3881 report number
    "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1": DataCategory.DOCUMENT,  # XDS entry
}

# Event types that touch a patient's record as a whole, with no more precise data object.
DEFAULT_EVENT_CATEGORIES: dict[str, DataCategory] = {
    "110110": DataCategory.MEDICAL,  # DCM Patient Record
    "110103": DataCategory.MEDICAL,  # DCM DICOM Instances Accessed
    "110111": DataCategory.MEDICAL,  # DCM Procedure Record
    "110109": DataCategory.MEDICAL,  # DCM Order Record
}

DEFAULT_PURPOSES: dict[str, Purpose] = {
    **dict.fromkeys(("TREAT", "ETREAT", "CAREMGT", "POPHLTH"), Purpose.CARE),
    **dict.fromkeys(("HPAYMT", "CLMATTCH", "COVAUTH", "ELIGDTRM"), Purpose.BILLING),
    **dict.fromkeys(("HRESCH", "CLINTRCH", "BIORCH"), Purpose.RESEARCH),
}

# The data categories from most to least sensitive: an access that touches several is filed
# under the most sensitive, so a rule about medical data cannot miss it.
SENSITIVITY = [
    DataCategory.MEDICAL,
    DataCategory.PRESCRIPTION,
    DataCategory.REIMBURSEMENT,
    DataCategory.DOCUMENT,
    DataCategory.BILLING,
    DataCategory.APPOINTMENT,
    DataCategory.ADMINISTRATIVE,
    DataCategory.IDENTITY,
]


class Site(BaseModel):
    """One audit source (a FHIR server's observer or site, an ATNA AuditSourceID)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = Field(default=None, description="The contract's `source` for it.")
    practice_id: str | None = Field(default=None, description="The practice whose data it holds.")
    person_role: Role | None = Field(
        default=None, description="Role of its users whose records carry no job role."
    )


class MappingPolicy(BaseModel):
    """How FHIR AuditEvents and ATNA audit messages become access events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actions: dict[Code, Action] = Field(
        default_factory=lambda: dict(DEFAULT_ACTIONS),
        description="Event type, subtype or FHIR interaction code -> action.",
    )
    record_events: list[Code] = Field(
        default_factory=lambda: list(DEFAULT_RECORD_EVENTS),
        description="Event types whose action is the CRUDE action code (see record_actions).",
    )
    record_actions: dict[Code, Action] = Field(
        default_factory=lambda: dict(DEFAULT_RECORD_ACTIONS),
        description="CRUDE action code (C, R, U, D, E) -> action, for record_events.",
    )
    roles: dict[Code, Role] = Field(
        default_factory=lambda: dict(DEFAULT_ROLES),
        description="Agent type/role code (FHIR) or RoleIDCode (ATNA) -> role.",
    )
    reference_roles: dict[Code, Role] = Field(
        default_factory=lambda: dict(DEFAULT_REFERENCE_ROLES),
        description="Resource type of the agent's `who` reference -> role.",
    )
    actor_roles: dict[Code, Role] = Field(
        default_factory=dict,
        description="Actor id -> role, for accounts whose records carry no role code.",
    )
    machine_codes: list[Code] = Field(
        default_factory=lambda: list(DEFAULT_MACHINE_CODES),
        description="Agent type/role codes of software and network endpoints: when several "
        "agents are requestors, a person is chosen over these.",
    )
    person_role: Role | None = Field(
        default=None,
        description="Role of a person whose record carries no job role (audit records mostly "
        "say 'human user', not 'secretary'). Empty: such records are refused until "
        "actor_roles, a site's person_role or this says; a wrong role means wrong alerts.",
    )
    categories: dict[Code, DataCategory] = Field(
        default_factory=lambda: dict(DEFAULT_CATEGORIES),
        description="Resource type (FHIR) or participant object id type (ATNA) -> category.",
    )
    event_categories: dict[Code, DataCategory] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_CATEGORIES),
        description="Event type -> category, when the record names no more precise data.",
    )
    purposes: dict[Code, Purpose] = Field(
        default_factory=lambda: dict(DEFAULT_PURPOSES),
        description="purposeOfUse / PurposeOfUse code -> purpose (unknown codes are kept "
        "in attributes, the purpose left empty).",
    )
    sites: dict[Code, Site] = Field(
        default_factory=dict,
        description="Observer, site or AuditSourceID -> the source and practice it stands for.",
    )
    practice_from_site: bool = Field(
        default=True,
        description="An audit source missing from `sites` is its own practice (one EHR, one "
        "practice); false leaves practice_id empty.",
    )
    fhir_source: str = Field(default="fhir", description="`source` of unlisted FHIR servers.")
    atna_source: str = Field(default="atna", description="`source` of unlisted ATNA sources.")

    @field_validator(
        "actions",
        "record_actions",
        "record_events",
        "roles",
        "reference_roles",
        "machine_codes",
        "categories",
        "event_categories",
        "purposes",
        mode="before",
    )
    @classmethod
    def _extends_defaults(cls, given: Any, info: ValidationInfo) -> Any:
        """What a deployment writes is added to the defaults (a table's row replaces the
        default row of its code; a list's codes follow the standard ones): adding a local
        role code must not silently drop the standard ones."""
        default = cls.model_fields[info.field_name or ""].default_factory
        known = default() if callable(default) else None  # type: ignore[call-arg]
        if isinstance(given, dict) and isinstance(known, dict):
            return {**known, **given}
        if isinstance(given, list) and isinstance(known, list):
            return [*known, *(code for code in given if code not in known)]
        return given

    def lookup(self, table: dict[str, V], codes: Iterable[tuple[str, str]]) -> V | None:
        """The first (system, code) pair the table knows, ``system|code`` before ``code``."""
        for system, code in codes:
            if system and f"{system}|{code}" in table:
                return table[f"{system}|{code}"]
            if code in table:
                return table[code]
        return None

    def is_record_event(self, codes: Iterable[tuple[str, str]]) -> bool:
        """Whether the event's action is its CRUDE code (a "Patient Record" event, say)."""
        return self.lookup(dict.fromkeys(self.record_events, True), codes) is not None

    def is_machine(self, codes: Iterable[tuple[str, str]]) -> bool:
        return self.lookup(dict.fromkeys(self.machine_codes, True), codes) is not None

    def site(self, names: Iterable[str], default_source: str) -> Placed:
        """Where the record comes from: the first audit source name listed in ``sites`` (the
        most specific first), else the first name, as its own practice."""
        names = [name for name in names if name]
        for name in names:
            if name in self.sites:
                site = self.sites[name]
                person_role = site.person_role or self.person_role
                return Placed(site.source or default_source, site.practice_id, person_role)
        practice = names[0] if names and self.practice_from_site else None
        return Placed(default_source, practice, self.person_role)


class Placed(NamedTuple):
    source: str
    practice_id: str | None
    person_role: Role | None


def most_sensitive(categories: Iterable[DataCategory]) -> DataCategory | None:
    found = set(categories)
    return next((category for category in SENSITIVITY if category in found), None)

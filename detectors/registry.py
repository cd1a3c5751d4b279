"""Every detector a deployment runs, built from one policy."""

from __future__ import annotations

from typing import Any

from detectors.base import Detector
from detectors.care import NoCareRelationshipDetector
from detectors.exceptions import Exceptions
from detectors.export_destination import UnapprovedDestinationDetector
from detectors.export_reid import CrossPracticeLinkageDetector, ExportFieldsDetector
from detectors.export_volume import UnusualVolumeDetector
from detectors.hri import BulkDownloadDetector
from detectors.policy import Policy
from detectors.roles import RoleNotPermittedDetector
from detectors.support_actions import NonViewActionDetector, UnapprovedLocationDetector
from detectors.support_consent import NoConsentDetector, OutOfScopeDetector

DETECTOR_TYPES = (
    NoConsentDetector,
    NonViewActionDetector,
    OutOfScopeDetector,
    UnapprovedLocationDetector,
    RoleNotPermittedDetector,
    NoCareRelationshipDetector,
    UnusualVolumeDetector,
    UnapprovedDestinationDetector,
    ExportFieldsDetector,
    CrossPracticeLinkageDetector,
    BulkDownloadDetector,
)

RULE_IDS = tuple(dict.fromkeys(kind.rule_id for kind in DETECTOR_TYPES))


def all_detectors(policy: Policy, exceptions: Exceptions | None = None) -> dict[str, Detector[Any]]:
    """Detectors by their unique name; all consult the same ``exceptions`` (live: the worker
    updates them as analysts add and delete exceptions)."""
    shared = exceptions if exceptions is not None else Exceptions()
    detectors: list[Detector[Any]] = [kind(policy, shared) for kind in DETECTOR_TYPES]
    return {detector.name: detector for detector in detectors}

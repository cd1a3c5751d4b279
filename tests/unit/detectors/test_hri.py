"""HRi: consult on purpose, never harvest."""

from __future__ import annotations

from detectors.models import AccessEvent
from tests.unit.detectors.helpers import DOCTOR, at, ev, fired, run

HRI = "hri.bulk_download"
SYNC = {"id": "svc-hri-sync", "role": "service"}


def _hri(
    action: str, when: str, patient: str, actor: dict[str, str] = DOCTOR, **f: object
) -> AccessEvent:
    return ev(
        action,
        actor,
        when,
        source="hri_gateway",
        patient_id=patient,
        data_category="reimbursement",
        **f,
    )


def test_a_doctor_viewing_then_downloading_is_quiet() -> None:
    assert run([_hri("view", at(0), "P-1"), _hri("download", at(60), "P-1")]) == []


def test_an_automated_download_fires_at_once() -> None:
    download = _hri("download", at(0), "P-1", SYNC, automated=True)
    [alert] = fired(run([download]), HRI)
    assert "an automated download, not a consultation" in alert.summary


def test_a_download_without_a_recent_view_fires() -> None:
    stale = [_hri("view", at(0), "P-1"), _hri("download", at(minutes=30), "P-1")]
    [alert] = fired(run(stale), HRI)
    assert "no view of that patient's history in the 10 min before" in alert.summary
    other_patient = [_hri("view", at(0), "P-2"), _hri("download", at(60), "P-1")]
    assert fired(run(other_patient), HRI)


def test_a_view_delivered_after_its_download_still_counts() -> None:
    view, download = _hri("view", at(0), "P-1"), _hri("download", at(60), "P-1")
    assert run([download, view]) == []


def test_too_many_distinct_patients_in_the_window_fires_once_per_incident() -> None:
    events = []
    for n in range(25):
        events += [_hri("view", at(minutes=2 * n), f"P-{n}")]
        events += [_hri("download", at(minutes=2 * n, seconds=30), f"P-{n}")]
    [alert] = fired(run(events), HRI)
    assert alert.event_count == 5  # the 21st to the 25th patient's downloads
    assert "more than 20 distinct patients' histories within 60 min" in alert.summary


def test_crossing_the_patient_threshold_alerts_without_waiting_for_lateness() -> None:
    """Later events can only add patients: the runner need not move its clock to decide."""
    from detectors.policy import Policy
    from detectors.registry import all_detectors
    from detectors.runner import Runner

    runner = Runner(all_detectors(Policy()))
    alerts = []
    for n in range(21):
        download = _hri("download", at(minutes=2 * n), f"P-{n}")
        for name, key in runner.routes(download):
            alerts += runner.step(name, key, download)  # no clock movement at all
    [alert] = fired(alerts, HRI)
    assert alert.event_ids == [download.event_id]


def test_a_harvest_that_goes_on_for_hours_is_one_incident() -> None:
    """Issue 13: over the threshold from the 21st patient on, for three hours: one incident,
    not one per hour-long alert bucket."""
    downloads = [_hri("download", at(minutes=4 * n), f"P-{n % 40}") for n in range(45)]
    [incident] = fired(run(downloads), HRI)
    assert incident.event_count == 45  # none was viewed first, so every download counts
    later = [_hri("download", at(days=1, minutes=n), "P-1") for n in range(2)]
    assert len(fired(run([*downloads, *later]), HRI)) == 2  # a day later: a new incident

"""Policy validation, alert identity and merging, and order-independence of the runner."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import pytest

from detectors.alerts import Alert, merge
from detectors.models import AccessEvent
from detectors.policy import Policy, PolicyError, load_policy
from detectors.registry import all_detectors
from detectors.runner import AlertBook, Runner, detect
from tests.unit.detectors.helpers import DOCTOR, SECRETARY, SUPPORT, at, ev, session, support_view


def test_a_policy_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[hri]\nmax_patients = 5\n\n[export.destinations]\nresearch = ["sftp://x"]\n')
    policy = load_policy(path)
    assert policy.hri.max_patients == 5
    assert policy.export.destinations == {"research": ["sftp://x"]}
    assert policy.hri.window_minutes == Policy().hri.window_minutes


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[hri]\nmax_patient = 5\n", "hri.max_patient: Extra inputs are not permitted"),
        ("[roles]\nsecretary = ['medicall']\n", "roles.secretary.0: Input should be"),
        ("[support]\nallowed_countries = ['fr']\n", "support.allowed_countries.0: String should"),
        ("[export]\nvolume_floor = -1\n", "export.volume_floor: Input should be greater"),
        ("[alerts\n", "not valid TOML"),
    ],
)
def test_a_bad_policy_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message.replace("[", r"\[")):
        load_policy(path)


def _incident() -> list[AccessEvent]:
    """A morning with findings of several rules, some waiting on later events."""
    events = [*session(consent_at=None)]
    events += [support_view(60 + 5 * n, "medical", patient_id=f"P-{n}") for n in range(6)]
    events += [
        ev("view", SECRETARY, at(300 + n), patient_id="P-9", data_category="medical")
        for n in range(3)
    ]
    events += [ev("view", DOCTOR, at(400), patient_id="P-7", data_category="medical")]
    events += [ev("view", {**SUPPORT, "country": "BR"}, at(500), patient_id="P-1")]
    return events


def test_alert_ids_and_merged_alerts_do_not_depend_on_arrival_order() -> None:
    detectors = all_detectors(Policy())
    events = _incident()
    expected = detect(events, detectors)
    assert {a.rule_id for a in expected} >= {"support.no_consent", "access.role_not_permitted"}
    for seed in range(5):
        # Delivered out of order by up to 30 s (the policy allows 60 s of lateness).
        rng = random.Random(seed)
        jitter = {e.event_id: rng.uniform(0, 30) for e in events}
        arrival = sorted(events, key=lambda e: e.timestamp.timestamp() + jitter[e.event_id])
        runner, book = Runner(detectors), AlertBook()
        for event in arrival:
            for name, key in runner.routes(event):
                book.add(runner.step(name, key, event))
            clock = max(runner.clock or event.timestamp, event.timestamp)
            book.add(runner.advance(clock))
        book.add(runner.finish())
        assert _by_id(book.alerts.values()) == _by_id(expected)


def test_merge_is_commutative_and_idempotent() -> None:
    runner = Runner(all_detectors(Policy()))
    singles: list[Alert] = []
    for event in sorted(_incident(), key=lambda e: e.timestamp):
        singles += runner.feed(event)
    singles += runner.finish()
    groups: dict[str, list[Alert]] = {}
    for alert in singles:
        groups.setdefault(alert.alert_id, []).append(alert)
    several = [group for group in groups.values() if len(group) > 2]
    assert several
    for group in several:
        rng = random.Random(len(group))
        shuffled = rng.sample(group, len(group))
        assert _fold(group) == _fold(list(reversed(group))) == _fold(shuffled + group)
        assert _fold(group).event_count == len(group)


def _by_id(alerts: Iterable[Alert]) -> dict[str, Alert]:
    return {alert.alert_id: alert for alert in alerts}


def _fold(alerts: list[Alert]) -> Alert:
    merged = alerts[0]
    for alert in alerts[1:]:
        merged = merge(merged, alert)
    return merged

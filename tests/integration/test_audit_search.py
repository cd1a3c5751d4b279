"""Auditors' searches and reports on the real stack: exactly the expected rows, no raw patient id
left in Elasticsearch by a search, and every search recorded in the history itself."""

from __future__ import annotations

import csv
import getpass
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streams.audit.keyring import KeyMismatchError
from streams.cli.main import cli
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.elastic import sync_client
from streams.keys import Key
from streams.producer import publish
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.conftest import TEST_KEY
from tests.helpers import stored_history

pytestmark = pytest.mark.integration

AUDITOR = "dpo-claire"  # stated with --as; the identity recorded is the OS user
LOOKER = getpass.getuser()


def _ids(events: list[dict[str, Any]], **match: Any) -> list[str]:
    def keep(event: dict[str, Any]) -> bool:
        return all(
            (event["actor"]["id"] if key == "actor" else event.get(key))
            in (value if isinstance(value, set) else {value})
            for key, value in match.items()
        )

    return sorted(e["event_id"] for e in events if keep(e))


def _search(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["search", "--json", "--as", AUDITOR, *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def _wait_indexed(settings: Settings, count: int, worker: WorkerProcess, log: Path) -> None:
    client = sync_client(settings)
    deadline = time.monotonic() + 120
    while len(stored_history(client, settings)) < count:
        assert worker.alive() and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(1)


def test_searches_and_reports_return_exactly_the_expected_accesses(
    isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = simulate(practices=9, days=1, seed=31)
    events = day.events
    assert len(events) > 1000  # more than one page of search_after
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in events])
    log = tmp_path / "worker.log"
    env = {"GUETTEUR_POLICY_FILE": str(DEMO_POLICY)}
    with WorkerProcess(log, env=env) as worker:
        _wait_indexed(isolated, len(events), worker, log)

        everything = _search()
        assert sorted(r["event_id"] for r in everything) == sorted(e["event_id"] for e in events)

        patient = next(e["patient_id"] for e in events if e.get("data_category") == "medical")
        assert sorted(r["event_id"] for r in _search("--patient", patient)) == _ids(
            events, patient_id=patient
        )
        assert sorted(r["event_id"] for r in _search("--actor", "sup-ma-042")) == _ids(
            events, actor="sup-ma-042"
        )
        practice = events[0]["practice_id"]
        exports = _search("--practice", practice, "--action", "export", "--action", "download")
        assert sorted(r["event_id"] for r in exports) == _ids(
            events, practice_id=practice, action={"export", "download"}
        )
        session = next(e["session_id"] for e in events if e.get("session_id"))
        assert sorted(r["event_id"] for r in _search("--session", session)) == _ids(
            events, session_id=session
        )
        ticket = next(e["ticket_id"] for e in events if e.get("ticket_id"))
        assert sorted(r["event_id"] for r in _search("--ticket", ticket)) == _ids(
            events, ticket_id=ticket
        )
        medical = _search("--category", "medical", "--source", "practice_app")
        assert sorted(r["event_id"] for r in medical) == _ids(
            events, data_category="medical", source="practice_app"
        )
        window = _search("--from", "2026-11-16T10:00+01:00", "--to", "2026-11-16T10:30+01:00")
        assert sorted(r["event_id"] for r in window) == sorted(
            e["event_id"]
            for e in events
            if "2026-11-16T10:00:00+01:00" <= e["timestamp"] <= "2026-11-16T10:30:00+01:00"
        )

        # The patient report: the same rows, in plain language, as CSV and printable HTML.
        report_csv = tmp_path / "patient.csv"
        result = CliRunner().invoke(
            cli,
            [
                "report",
                "patient",
                patient,
                "--format",
                "csv",
                "--out",
                str(report_csv),
                "--as",
                AUDITOR,
            ],
        )
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader(report_csv.open()))
        # The patient's report also shows who searched for them: the auditors are watched too.
        audits = [r for r in rows if r["source"] == "guetteur"]
        accesses = [r for r in rows if r["source"] != "guetteur"]
        assert sorted(r["event_id"] for r in accesses) == _ids(events, patient_id=patient)
        assert {r["actor"] for r in audits} <= {LOOKER}
        assert {r["role"] for r in audits} <= {"auditor"}  # GUETTEUR_AUDITOR_ROLE's default
        assert all(r["sentence"] and r["actor"] in r["sentence"] for r in rows)
        page = tmp_path / "patient.html"
        CliRunner().invoke(
            cli,
            ["report", "patient", patient, "--format", "html", "--out", str(page), "--as", AUDITOR],
        )
        text = page.read_text()
        audit_lines = text.count(f"{LOOKER} (auditor) searched")
        assert text.count("<li") == len(accesses) + audit_lines

        actor_rows = _report(["report", "actor", "sup-ma-042"])
        assert sorted(r["event_id"] for r in actor_rows) == _ids(events, actor="sup-ma-042")
        practice_rows = _report(["report", "practice", practice])
        assert sorted(r["event_id"] for r in practice_rows) == _ids(
            events, practice_id=practice, action={"export", "download"}
        )

        # Accesses that raised an alert are flagged with the rule (once detection has run).
        flagged = _wait_for_flags(["report", "actor", "sup-ext-007", "--format", "json"])
        assert flagged and all(r["alerts"] == "support.unapproved_location" for r in flagged)
        # Input that finds nothing says why: an actor id in the wrong case (issue 13).
        wrong_case = CliRunner().invoke(cli, ["search", "--actor", "SUP-EXT-007", "--as", AUDITOR])
        assert wrong_case.exit_code == 0
        assert "did you mean 'sup-ext-007'?" in wrong_case.stderr
        # report --json exists, and `stack status` knows the running worker.
        as_json = CliRunner().invoke(
            cli, ["report", "actor", "sup-ext-007", "--json", "--as", AUDITOR]
        )
        assert as_json.exit_code == 0 and json.loads(as_json.stdout.splitlines()[0])["event_id"]
        status = CliRunner().invoke(cli, ["stack", "status", "--json"])
        workers = [json.loads(line) for line in status.stdout.splitlines()]
        assert any(w["name"] == "worker" and w["running"] for w in workers), status.stdout
        # The pseudonym, for people: whole, on one line, ready to copy.
        shown = CliRunner().invoke(cli, ["pseudonym", patient, "--as", AUDITOR])
        whole = Pseudonymizer(Key("test", TEST_KEY.encode())).pseudonym(patient)
        assert shown.exit_code == 0 and f"{whole}  (current key test)" in shown.stdout

        # The search shows the same flags (its alerts column was always empty).
        searched = _search("--actor", "sup-ext-007")
        assert searched and all(r["alerts"] == "support.unapproved_location" for r in searched)

        # A pseudonym look-up is recorded too (its holder could search Kibana unrecorded).
        looked_up = CliRunner().invoke(cli, ["pseudonym", patient, "--json", "--as", AUDITOR])
        assert looked_up.exit_code == 0, looked_up.output
        # A search whose record the worker would refuse returns an error, not data.
        refused = CliRunner().invoke(cli, ["search", "--json", "--practice", "p" * 200])
        assert refused.exit_code == 1 and not refused.output.lstrip().startswith("{")

        # The searches, reports and look-ups above: one access event each.
        searches = 10 + 6 + 2
        recorded = _wait_for_audit_events(isolated, searches, worker, log)
        assert len(recorded) == searches
        assert {doc["user"]["id"] for doc in recorded} == {LOOKER}
        looks = [doc["health"]["attributes"]["guetteur_audit"] for doc in recorded]
        assert {look["stated_as"] for look in looks} == {AUDITOR}
        assert {look["proven_by"] for look in looks} == {"os_user"}
        assert {look["role"] for look in looks} == {"auditor"}
        assert {look["index"] for look in looks} == {isolated.history_index, None}
        assert sum(look["kind"] == "pseudonym look-up" for look in looks) == 2
        pseudonym = Pseudonymizer(Key("test", TEST_KEY.encode())).pseudonym(patient)
        patient_searches = [
            d for d in recorded if d.get("health", {}).get("patient", {}).get("pseudonym")
        ]
        assert {d["health"]["patient"]["pseudonym"] for d in patient_searches} == {pseudonym}
        assert len(patient_searches) == 5  # 3 searches and reports, 2 look-ups

    _assert_wrong_keys_refused(patient, _ids(events, patient_id=patient), tmp_path, monkeypatch)
    _assert_raw_id_nowhere(isolated, patient)


def _assert_wrong_keys_refused(
    patient: str, expected: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A keyring that made none of the history's pseudonyms is refused with the key ids the data
    uses, instead of "0 accesses"; after a rotation, the old key in the key file still finds
    the patient (issue 12)."""
    fingerprint = Key("test", TEST_KEY.encode()).fingerprint
    other_secret = "another-secret-under-the-same-id-0123456789"
    wrong = {"same id, other secret": ("test", other_secret), "other id": ("k9", TEST_KEY)}
    for why, (key_id, secret) in wrong.items():
        monkeypatch.setenv("GUETTEUR_PSEUDONYM_KEY_ID", key_id)
        monkeypatch.setenv("GUETTEUR_PSEUDONYM_KEY", secret)
        for command in (["search", "--patient", patient], ["report", "patient", patient]):
            result = CliRunner().invoke(cli, [*command, "--as", AUDITOR], standalone_mode=False)
            assert result.exit_code != 0 and isinstance(result.exception, KeyMismatchError), why
            message = str(result.exception)
            assert f"test (fingerprint {fingerprint})" in message, (why, message)
            assert "GUETTEUR_DEMO" not in message and "0 accesses" not in result.output
    rotated = tmp_path / "keys"
    rotated.write_text(f"k2={other_secret}\ntest={TEST_KEY}\n")  # new key first, old kept
    monkeypatch.delenv("GUETTEUR_PSEUDONYM_KEY")
    monkeypatch.setenv("GUETTEUR_PSEUDONYM_KEY_FILE", str(rotated))
    found = sorted(r["event_id"] for r in _search("--patient", patient))
    assert [e for e in found if e in expected] == expected


def _report(command: list[str]) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, [*command, "--format", "json", "--as", AUDITOR])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def _wait_for_flags(command: list[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = CliRunner().invoke(cli, [*command, "--as", AUDITOR])
        rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
        if rows and all(r["alerts"] for r in rows):
            break
        time.sleep(2)
    return rows


def _wait_for_audit_events(
    settings: Settings, count: int, worker: WorkerProcess, log: Path
) -> list[dict[str, Any]]:
    client = sync_client(settings)
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        assert worker.alive(), log.read_text()[-2000:]
        client.indices.refresh(index=settings.history_index)
        hits = client.search(
            index=settings.history_index, query={"term": {"event.provider": "guetteur"}}, size=100
        )["hits"]["hits"]
        found = [hit["_source"] for hit in hits]
        if len(found) >= count:
            break
        time.sleep(1)
    return found


def _assert_raw_id_nowhere(settings: Settings, raw: str) -> None:
    client = sync_client(settings)
    indices = list(client.indices.get(index=f"{settings.index_prefix}-*"))
    client.indices.refresh(index=",".join(indices))
    for index in indices:
        hits = client.search(index=index, size=10_000)["hits"]["hits"]
        assert raw not in json.dumps(hits), index

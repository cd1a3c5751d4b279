"""Raw identifiers planted in every field of every input reach nothing but the input and the
dead-letter topics (issue 12): not an index, not an internal topic, not a log line, not a metric.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from kafka import KafkaAdminClient

from streams.cli.main import cli
from streams.console import tokens
from streams.console.api import create_api
from streams.elastic import sync_client
from streams.keys import Key
from streams.producer import publish
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from streams.topics import ensure_topics, read_topic
from streams.worker_process import WorkerProcess
from tests.conftest import TEST_KEY
from tests.helpers import stored_history

pytestmark = pytest.mark.integration

RAW = "P-777777"  # the patient of every event
OTHER = "P-123456"  # another patient, known only by the deployment's id pattern
NIR = "1 85 05 75 123 456 78"
EMAIL = "jean.dupont@gmail.com"
PHONE = "+33 6 12 34 56 78"
IBAN = "FR76 3000 6000 0112 3456 7890 189"
PLANTED = [RAW, OTHER, NIR, EMAIL, PHONE, IBAN]
# What must appear nowhere: each identifier, and the parts that would still identify.
NEEDLES = [*PLANTED, "777777", "123456", NIR.replace(" ", ""), "jean.dupont", "0112 3456"]

POLICY = """
[privacy]
patient_id_patterns = ["P-[0-9]{6}"]
attributes = { "*" = ["pseudonymised", "note", "nested"], "guetteur" = ["guetteur_audit"] }
"""


def _event(n: int, planted: str, **extra: Any) -> dict[str, Any]:
    """One identifier in every free-text field the contract has (and in attribute keys)."""
    text = f"n{n} {planted}"
    return {
        "event_id": f"ev-{n}-{planted}",
        "timestamp": f"2026-11-16T10:{n:02d}:00+01:00",
        "source": f"src {planted}"[:64],
        "action": "view",
        "actor": {"id": f"sup {planted}", "role": "support_agent", "organization": text},
        "practice_id": f"prac {planted}",
        "patient_id": RAW,
        "data_category": "medical",
        "session_id": f"rs {planted}",
        "ticket_id": f"T {planted}",
        "purpose": "support",
        "authorization_ref": text,
        "attributes": {
            "note": f"opened chart of {planted}",
            "nested": {planted: [text, {"deeper": text}]},
            "dropped": text,
        },
        **extra,
    }


def _inputs() -> list[bytes]:
    events = []
    for n, planted in enumerate(PLANTED):
        events.append(_event(n, planted))
        export = {"action": "export", "destination": f"email:{planted}", "fields": [planted]}
        events.append(_event(n + 20, planted, **export, event_id=f"ex-{n}-{planted}"))
    valid = [json.dumps(e).encode() for e in events]
    invalid = [
        json.dumps({**events[0], "event_id": f"bad-{RAW}", "action": f"steal {RAW}"}).encode(),
        json.dumps({**events[1], "event_id": f"bad-{NIR}", NIR: EMAIL}).encode(),
        f"not json {RAW} {IBAN}".encode(),
    ]
    return valid + invalid


def _auditors_look(settings: Settings) -> int:
    """Auditors' inputs, command line and console: a raw patient id, raw text in every filter
    and in the stated purpose. Returns the looks made (each one is recorded)."""
    looks = [
        ["search", "--patient", RAW, "--as", f"dpo {EMAIL}"],
        ["search", "--actor", f"sup {NIR}", "--ticket", f"T {PHONE}", "--practice", OTHER],
        ["report", "patient", RAW, "--format", "json"],
        ["report", "actor", f"sup {IBAN}", "--format", "json"],
        ["pseudonym", RAW, "--as", f"for {NIR}"],
    ]
    for args in looks:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    paths = [
        f"/api/search?patient={quote(RAW)}&session={quote('rs ' + EMAIL)}",
        f"/api/reports/patient?patient={quote(RAW)}&format=csv",
        f"/api/reports/practice?practice={quote('prac ' + IBAN)}",
    ]
    asyncio.run(_console_looks(settings, paths))
    return len(looks) + len(paths)


async def _console_looks(settings: Settings, paths: list[str]) -> None:
    es = sync_client(settings)
    token = tokens.create(es, settings, "claire", tokens.Role.AUDITOR)
    pseudonymizer = Pseudonymizer(Key("test", TEST_KEY.encode()))
    client = TestClient(TestServer(create_api(settings, es, pseudonymizer)))
    await client.start_server()
    try:
        for path in paths:
            answer = await client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert answer.status == 200, await answer.text()
    finally:
        await client.close()


def test_planted_identifiers_are_found_nowhere_but_the_input_and_dead_letters(
    isolated: Settings, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    ensure_topics(isolated)
    inputs = _inputs()
    publish(isolated, isolated.topic_events, inputs)
    valid = len(inputs) - 3
    log = tmp_path / "worker.log"
    client = sync_client(isolated)
    env = {"GUETTEUR_POLICY_FILE": str(policy), "GUETTEUR_CHECKPOINT_SECONDS": "0"}
    with WorkerProcess(log, env=env) as worker:
        _wait(lambda: len(stored_history(client, isolated)) >= valid, worker, log)
        searches = _auditors_look(isolated)
        _wait(lambda: len(stored_history(client, isolated)) >= valid + searches, worker, log)
        _wait(lambda: _alerts(client, isolated) > 0, worker, log)
        time.sleep(3)  # the last alerts and checkpoints
        metrics = _metrics(isolated)
    assert "guetteur_identifiers_redacted_total" in metrics

    places = {"log": log.read_text(), "metrics": metrics}
    places |= _indices(client, isolated)
    places |= _topics(isolated)
    assert len(places) > 8  # the history, alerts, checkpoints, internal topics and changelogs
    leaks = {
        (where, needle) for where, text in places.items() for needle in NEEDLES if needle in text
    }
    assert leaks == set()

    # The input and the dead letters do hold them: the test planted what it looks for.
    dead = "".join(
        r.value.decode(errors="replace") for r in read_topic(isolated, isolated.topic_dlq, "t")
    )
    assert RAW in dead and IBAN in dead
    report = CliRunner().invoke(cli, ["redactions", "--json"])
    removed = [json.loads(line) for line in report.output.splitlines() if line.startswith("{")]
    assert len(removed) >= valid and not any(needle in report.output for needle in NEEDLES)


def _wait(done: Any, worker: WorkerProcess, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert worker.alive() and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)


def _alerts(client: Any, settings: Settings) -> int:
    if not client.indices.exists(index=settings.alerts_index):
        return 0
    client.indices.refresh(index=settings.alerts_index)
    return int(client.count(index=settings.alerts_index)["count"])


def _metrics(settings: Settings) -> str:
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def _indices(client: Any, settings: Settings) -> dict[str, str]:
    indices = list(client.indices.get(index=f"{settings.index_prefix}-*"))
    client.indices.refresh(index=",".join(indices))
    found = {}
    for index in indices:
        hits = client.search(index=index, size=10_000)["hits"]["hits"]
        found[f"index {index}"] = json.dumps(hits, ensure_ascii=False)
    return found


def _topics(settings: Settings) -> dict[str, str]:
    """Every topic of this worker but the input and the dead letters: keys, values, headers."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
    try:
        names = [
            t
            for t in admin.list_topics()
            if t.startswith((settings.topic_events, settings.app_id))
            and t not in {settings.topic_events, settings.topic_dlq}
        ]
    finally:
        admin.close()
    found = {}
    for name in names:
        parts = []
        for record in read_topic(settings, name, "privacy-test"):
            parts += [record.key or b"", record.value or b""]
            parts += [value for _, value in record.headers or []]
        found[f"topic {name}"] = b"\n".join(parts).decode(errors="replace")
    return found

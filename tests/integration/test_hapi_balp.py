"""A real HAPI FHIR server sends its IHE BALP audit trail to Guetteur, unchanged.

HAPI FHIR (from Maven Central, ``streams/stack/maven/hapi.pom.xml``) runs ``hapi/BalpServer.java``:
an R4 server with HAPI's own ``BalpAuditCaptureInterceptor`` and its asynchronous FHIR-client
sink, pointed at the console's FHIR endpoint with a producer token. A user creates a patient and
an observation and reads the observation back; the AuditEvents HAPI writes for that (Patient
Create x2, Patient Read) must be accepted, mapped by the worker and stored in the access history
under ``fhir:`` ids, the patient pseudonymised. Java, javac and Maven are required: a missing one
is an error, not a skip. The jars are resolved once into the stack's cache; later runs are offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from aiohttp.test_utils import TestServer

from streams import dead_letters
from streams.console import tokens
from streams.console.api import create_api
from streams.elastic import sync_client
from streams.history.templates import prepare
from streams.keys import Key
from streams.pseudonym import Pseudonymizer
from streams.settings import Settings
from streams.stack import toolchain
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.conftest import TEST_KEY, RunningStack
from tests.helpers import free_ports, stored_history

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "streams" / "stack" / "maven" / "hapi.pom.xml"
SOURCE = Path(__file__).resolve().parent / "hapi" / "BalpServer.java"
PSEUDONYMS = Pseudonymizer(Key("test", TEST_KEY.encode()))
FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="session")
def hapi_classpath(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """HAPI's jars (resolved once per pom content, in the stack's cache) and BalpServer's
    classes, compiled for this session."""
    java_home = toolchain.java_home()  # a missing or old Java raises: the test errors
    version = toolchain.pom_property(POM, "hapi.version")
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    home = stack.settings.dir / "cache" / f"hapi-{version}-{digest}"
    libs = home / "libs"
    if not (home / ".complete").is_file():
        shutil.rmtree(home, ignore_errors=True)
        log = stack.settings.dir / "logs" / "maven-hapi.log"
        toolchain.copy_dependencies(POM, libs, log, lambda _: None)
        (home / ".complete").write_text(f"{version} {digest}\n")
    javac = java_home / "bin" / "javac"
    if not javac.exists():
        found = shutil.which("javac")
        if found is None:
            pytest.fail("javac not found: install openjdk-17-jdk-headless")
        javac = Path(found)
    classes = tmp_path_factory.mktemp("balp-classes")
    command = [str(javac), "-nowarn", "--release", "17", "-cp", f"{libs}/*"]
    compiled = subprocess.run(
        [*command, "-d", str(classes), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert compiled.returncode == 0, f"compiling {SOURCE.name} failed:\n{compiled.stderr[-3000:]}"
    return os.pathsep.join([f"{libs}/*", str(classes)])


@contextlib.contextmanager
def console(settings: Settings) -> Iterator[str]:
    """The console on a real loopback port, served from a thread of its own (HAPI's sink calls
    it while this test blocks on HTTP and on Elasticsearch); its FHIR base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="console", daemon=True)
    thread.start()
    server = TestServer(create_api(settings, sync_client(settings), PSEUDONYMS), host="127.0.0.1")
    try:
        asyncio.run_coroutine_threadsafe(server.start_server(), loop).result(30)
        yield f"http://127.0.0.1:{server.port}/fhir"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class BalpServer:
    """The Java process: started, waited for ("ready"), its stdout collected, stopped."""

    def __init__(self, classpath: str, port: int, repository: str, token: str, log: Path):
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.log = log
        java = toolchain.java_home() / "bin" / "java"
        with log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [str(java), "-cp", classpath, "BalpServer", str(port), repository],
                stdout=subprocess.PIPE,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "BALP_BEARER_TOKEN": token},
                text=True,
            )
        self.reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self.reader.start()

    def _read(self, stdout: IO[str] | None) -> None:
        assert stdout is not None
        for line in stdout:
            self.lines.put(line.strip())

    def wait_for(self, prefix: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"HAPI exited:\n{self.log.read_text()[-3000:]}"
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"HAPI never printed {prefix!r}:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> list[str]:
        """Stop it (SIGTERM, then SIGKILL); everything it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen


def fhir(method: str, url: str, user: str, body: dict[str, Any] | None = None) -> Any:
    """One plain HTTP call to HAPI, as a user's application makes it."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": FHIR_JSON, "X-User": user}
    if data is not None:
        headers["Content-Type"] = FHIR_JSON
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def profile(doc: dict[str, Any]) -> str:
    """The BALP profile's short name (``IHE.BasicAudit.PatientRead`` -> ``PatientRead``)."""
    return str(doc["health"]["attributes"]["fhir"]["profile"][0]).rsplit(".", 1)[1]


def test_hapi_balp_audit_events_reach_the_access_history(
    isolated: Settings, hapi_classpath: str, tmp_path: Path
) -> None:
    hapi_port = free_ports(1)[0]
    hapi_base = f"http://127.0.0.1:{hapi_port}/fhir"
    # BALP names the server by its base URL (source.observer.display): that is the site.
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f'[mapping.sites."{hapi_base}"]\nsource = "hapi"\npractice_id = "prac-hapi"\n'
    )
    ensure_topics(isolated)
    es = sync_client(isolated)
    prepare(es, isolated)
    token = tokens.create(es, isolated, "hapi-balp", tokens.Role.PRODUCER)
    suffix = uuid.uuid4().hex[:12]
    user, patient = f"dr-balp-{suffix}", f"pat-balp-{suffix}"

    worker_log = tmp_path / "worker.log"
    settings = isolated.model_copy(update={"policy_file": policy})
    with (
        WorkerProcess(worker_log, env={"GUETTEUR_POLICY_FILE": str(policy)}) as worker,
        console(settings) as repository,
    ):
        hapi = BalpServer(hapi_classpath, hapi_port, repository, token, tmp_path / "hapi.log")
        try:
            assert hapi.wait_for("ready", 120) == f"ready {hapi_base}"
            # PUT: the patient is created under an id of ours (update as create), so the raw
            # id is a string no stored document could hold by chance.
            fhir(
                "PUT",
                f"{hapi_base}/Patient/{patient}",
                user,
                {
                    "resourceType": "Patient",
                    "id": patient,
                    "name": [{"family": "Balp"}],
                },
            )
            observation = fhir(
                "POST",
                f"{hapi_base}/Observation",
                user,
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "heart rate"},
                    "subject": {"reference": f"Patient/{patient}"},
                },
            )
            read = fhir("GET", f"{hapi_base}/Observation/{observation['id']}", user)
            assert read["subject"]["reference"] == f"Patient/{patient}"

            docs: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + 120
            while len(docs) < 3 and time.monotonic() < deadline:
                assert worker.alive(), worker_log.read_text()[-3000:]
                time.sleep(1)
                docs = stored_history(sync_client(isolated), isolated)
        finally:
            printed = hapi.stop()
    answers = [line for line in printed if line.startswith("audit-repository")]
    written = [json.loads(line[12:]) for line in printed if line.startswith("audit-event ")]
    hapi_log = (tmp_path / "hapi.log").read_text()
    assert len(docs) == 3, (sorted(docs), answers, written, hapi_log[-4000:])

    # What BALP wrote: one AuditEvent per interaction, naming the patient by its raw id.
    profiles = sorted(event["meta"]["profile"][0].rsplit(".", 1)[1] for event in written)
    assert profiles == ["PatientCreate", "PatientCreate", "PatientRead"], written
    assert all(f"/Patient/{patient}" in json.dumps(event) for event in written)
    # HAPI's sink posted transaction Bundles to POST [base]; the console took every one.
    assert answers and set(answers) == {"audit-repository-answered 200"}, answers
    assert "Failed to transmit" not in hapi_log and "Second failure" not in hapi_log
    assert all(event_id.startswith("fhir:") for event_id in docs), sorted(docs)
    by_action = sorted(
        (d["event"]["action"], d["health"].get("data_category"), profile(d)) for d in docs.values()
    )
    # The upsert's interaction is "update", but BALP writes action C (profile PatientCreate):
    # a creation, and filed as one.
    assert by_action == [
        ("create", "identity", "PatientCreate"),
        ("create", "medical", "PatientCreate"),
        ("view", "medical", "PatientRead"),
    ], by_action
    # BALP records the client's address on another agent than the user's (DCM 110153), the
    # server's as a URL: the one IP address among the agents is where the request came from.
    for doc in docs.values():
        assert doc["source"] == {"ip": "127.0.0.1"}
        assert doc["user"] == {"id": user, "roles": ["practitioner"]}
        assert doc["event"]["provider"] == "hapi" and doc["event"]["outcome"] == "success"
        assert doc["health"]["practice"] == {"id": "prac-hapi"}
        assert doc["health"]["patient"]["pseudonym"] == PSEUDONYMS.pseudonym(patient)
    assert patient not in json.dumps(docs)
    assert list(dead_letters.read_all(isolated, timeout=5)) == []

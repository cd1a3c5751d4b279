"""The web console in a real browser (Debian's Chromium, headless, through chromedriver): sign
in, run a patient report, triage an alert. A screenshot goes to test-output/console.png."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from streams.console import tokens
from streams.console.triage import current
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.elastic import sync_client
from streams.producer import publish
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.conftest import RunningStack
from tests.helpers import free_ports, paged_ids, stored_history, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "test-output"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
    ):
        options.add_argument(argument)
    # Debian's driver, explicitly: Selenium must not try to download one.
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def _console(port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.main", "console", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return process
        except OSError:
            assert process.poll() is None, log.read_text()
            time.sleep(0.3)
    raise AssertionError(f"the console did not answer:\n{log.read_text()}")


def _wait_for_alerts(settings: Settings, worker: WorkerProcess, log: Path) -> None:
    client = sync_client(settings)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert worker.alive(), log.read_text()[-2000:]
        if client.indices.exists(index=settings.alerts_index):
            client.indices.refresh(index=settings.alerts_index)
            if client.count(index=settings.alerts_index)["count"] >= 5:
                return
        time.sleep(1)
    raise AssertionError("no alerts were indexed")


def test_sign_in_run_a_patient_report_and_triage_an_alert(
    isolated: Settings, browser: WebDriver, tmp_path: Path
) -> None:
    day = simulate(practices=2, days=1, seed=41)
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in day.events])
    log = tmp_path / "worker.log"
    with WorkerProcess(log, env={"GUETTEUR_POLICY_FILE": str(DEMO_POLICY)}) as worker:
        _wait_for_alerts(isolated, worker, log)
        deadline = time.monotonic() + 120
        while len(stored_history(sync_client(isolated), isolated)) < len(day.events):
            assert worker.alive() and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        token = tokens.create(sync_client(isolated), isolated, "claire", tokens.Role.ADMIN)
        port = free_ports(1)[0]
        console = _console(port, tmp_path / "console.log")
        try:
            wait = WebDriverWait(browser, 30)
            browser.get(f"http://127.0.0.1:{port}/")
            browser.find_element(By.ID, "token").send_keys(token)
            browser.find_element(By.ID, "login").click()
            wait.until(
                expected_conditions.text_to_be_present_in_element(
                    (By.ID, "whoami"), "signed in as claire (admin)"
                )
            )

            patient = next(
                e["patient_id"] for e in day.events if e.get("data_category") == "medical"
            )
            expected = sum(1 for e in day.events if e.get("patient_id") == patient)
            browser.find_element(By.ID, "patient").send_keys(patient)
            browser.find_element(By.ID, "run-report").click()
            wait.until(
                lambda b: len(b.find_elements(By.CSS_SELECTOR, "#report-results li")) >= expected
            )
            lines = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#report-results li")]
            assert len(lines) == expected and all(patient not in line for line in lines)

            # An actor's report next to the patient's, and a dated search with its alerts.
            Select(browser.find_element(By.ID, "report-kind")).select_by_value("actor")
            subject = browser.find_element(By.ID, "patient")
            subject.clear()
            subject.send_keys("sup-ext-007")
            browser.find_element(By.ID, "run-report").click()
            by_actor = sum(1 for e in day.events if e["actor"]["id"] == "sup-ext-007")
            wait.until(
                lambda b: len(b.find_elements(By.CSS_SELECTOR, "#report-results li")) == by_actor
            )
            browser.find_element(By.ID, "search-actor").send_keys("sup-ext-007")
            browser.execute_script(
                "document.getElementById('search-from').value = '2026-11-16';"
                "document.getElementById('search-to').value = '2026-11-16';"
            )
            browser.find_element(By.ID, "run-search").click()
            wait.until(
                lambda b: len(b.find_elements(By.CSS_SELECTOR, "#search-results tr")) == by_actor
            )
            flagged = browser.find_elements(By.CSS_SELECTOR, "#search-results tr.alert")
            assert flagged and "support.unapproved_location" in flagged[0].text

            browser.find_element(By.ID, "load-alerts").click()
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#alerts tr"))
            row = browser.find_elements(By.CSS_SELECTOR, "#alerts tr")[0]
            alert_id = row.get_attribute("data-alert-id")
            row.find_element(By.CLASS_NAME, "triage-comment").send_keys(
                "confirmed with the practice"
            )
            OUTPUT.mkdir(exist_ok=True)
            browser.execute_script("window.scrollTo(0, 0)")
            browser.save_screenshot(str(OUTPUT / "console.png"))
            row.find_element(By.CLASS_NAME, "triage-tp").click()
            wait.until(
                expected_conditions.text_to_be_present_in_element(
                    (By.ID, "message"), f"Alert {alert_id}: true positive"
                )
            )
            browser.save_screenshot(str(OUTPUT / "console-after-triage.png"))

            # The overview (issue 13): charts drawn by Chart.js, served by the console itself.
            numbers = _overview(port, token)
            alerts = sync_client(isolated).count(index=isolated.alerts_index)["count"]
            assert sum(r["count"] for r in numbers["alerts_by_severity"]) == alerts
            assert sum(r["count"] for r in numbers["alerts_by_triage"]) == alerts
            assert {"key": "true_positive", "count": 1} in numbers["alerts_by_triage"]
            browser.execute_script(
                "document.getElementById('overview-from').value = '2026-11-01';"
                "document.getElementById('overview-to').value = '2026-11-30';"
            )
            browser.find_element(By.ID, "load-overview").click()
            wait.until(
                expected_conditions.text_to_be_present_in_element(
                    (By.ID, "overview-summary"), f"{alerts} alert(s)"
                )
            )
            drawn = browser.execute_script(
                "return ['chart-alerts', 'chart-triage', 'chart-actors', 'chart-practices',"
                " 'chart-exports', 'chart-activity']"
                ".filter(id => Chart.getChart(document.getElementById(id))).length"
            )
            assert drawn == 6
            section = browser.find_element(By.ID, "overview-section")
            browser.execute_script("arguments[0].scrollIntoView()", section)
            section.screenshot(str(OUTPUT / "overview.png"))
        finally:
            console.terminate()
            console.wait(10)
    assert alert_id
    record = current(sync_client(isolated), isolated, alert_id)
    assert record is not None and record["status"] == "true_positive"
    assert record["by"] == "claire" and record["comment"] == "confirmed with the practice"
    assert (OUTPUT / "console.png").stat().st_size > 10_000
    assert (OUTPUT / "overview.png").stat().st_size > 10_000


def _overview(port: int, token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/overview?from=2026-11-01T00:00:00%2B00:00"
        "&to=2026-11-30T23:59:59%2B00:00",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        found: dict[str, Any] = json.load(answer)
    return found


PAGING = {"GUETTEUR_PAGE_SEVERITIES": "low,medium,high,critical"}


def test_filter_open_an_incident_see_its_evidence_and_make_it_a_false_positive(
    isolated: Settings, browser: WebDriver, stack: RunningStack, tmp_path: Path
) -> None:
    """Issue 13's analyst flow: filter the alerts, open an incident, see its evidence, call it a
    false positive with an exception, and see its page resolve."""
    day = simulate(practices=2, days=1, seed=41)
    ensure_topics(isolated)
    publish(isolated, isolated.topic_events, [json.dumps(e).encode() for e in day.events])
    log = tmp_path / "worker.log"
    env = {"GUETTEUR_POLICY_FILE": str(DEMO_POLICY), **PAGING}
    with WorkerProcess(log, env=env) as worker:
        _wait_for_alerts(isolated, worker, log)
        rule = "support.unapproved_location"
        target = _indexed_alert(isolated, rule)
        alertmanager = stack.settings.alertmanager_url
        wait_until(lambda: target["alert_id"] in paged_ids(alertmanager, isolated.app_id))
        token = tokens.create(sync_client(isolated), isolated, "ana", tokens.Role.ADMIN)
        port = free_ports(1)[0]
        console = _console(port, tmp_path / "console.log", **PAGING)
        try:
            wait = WebDriverWait(browser, 30)
            browser.get(f"http://127.0.0.1:{port}/")
            browser.find_element(By.ID, "token").send_keys(token)
            browser.find_element(By.ID, "login").click()
            wait.until(expected_conditions.visibility_of_element_located((By.ID, "alerts-rule")))
            browser.find_element(By.ID, "alerts-rule").send_keys(rule)
            browser.find_element(By.ID, "load-alerts").click()
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#alerts tr"))
            rows = browser.find_elements(By.CSS_SELECTOR, "#alerts tr")
            assert [r.get_attribute("data-alert-id") for r in rows] == [target["alert_id"]]
            rows[0].find_element(By.CLASS_NAME, "open-incident").click()
            wait.until(
                lambda b: (
                    len(b.find_elements(By.CSS_SELECTOR, "#incident-evidence li"))
                    == target["event_count"]
                )
            )
            evidence = browser.find_element(By.ID, "incident-evidence").text
            assert target["actor_id"] in evidence
            browser.find_element(By.ID, "exception-reason").send_keys("travels for the vendor")
            browser.execute_script(
                "document.getElementById('exception-expires').value = '2027-01-31'"
            )
            incident = browser.find_element(By.ID, "incident")
            browser.execute_script("arguments[0].scrollIntoView()", incident)
            OUTPUT.mkdir(exist_ok=True)
            incident.screenshot(str(OUTPUT / "incident.png"))
            browser.find_element(By.ID, "false-positive-with-exception").click()
            try:
                wait.until(
                    expected_conditions.text_to_be_present_in_element(
                        (By.ID, "message"), "page resolved"
                    )
                )
            except Exception:
                raise AssertionError(browser.find_element(By.ID, "message").text) from None
        finally:
            console.terminate()
            console.wait(10)
    assert target["alert_id"] not in paged_ids(alertmanager, isolated.app_id)
    record = current(sync_client(isolated), isolated, target["alert_id"])
    assert record is not None and record["status"] == "false_positive"
    assert record["comment"] == "travels for the vendor"


def _indexed_alert(settings: Settings, rule_id: str) -> dict[str, Any]:
    client = sync_client(settings)
    client.indices.refresh(index=settings.alerts_index)
    hits = client.search(index=settings.alerts_index, query={"term": {"rule_id": rule_id}})
    [hit] = hits["hits"]["hits"]
    found: dict[str, Any] = hit["_source"]
    return found

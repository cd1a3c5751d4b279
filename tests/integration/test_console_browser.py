"""The web console in a real browser (Debian's Chromium, headless, through chromedriver): sign
in, run a patient report, triage an alert. A screenshot goes to test-output/console.png."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from streams.console import tokens
from streams.console.triage import current
from streams.demo.simulate import DEMO_POLICY, simulate
from streams.elastic import sync_client
from streams.producer import publish
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker_process import WorkerProcess
from tests.helpers import free_ports, stored_history

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


def _console(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli.main", "console", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
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
        finally:
            console.terminate()
            console.wait(10)
    assert alert_id
    record = current(sync_client(isolated), isolated, alert_id)
    assert record is not None and record["status"] == "true_positive"
    assert record["by"] == "claire" and record["comment"] == "confirmed with the practice"
    assert (OUTPUT / "console.png").stat().st_size > 10_000

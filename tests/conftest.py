"""Shared fixtures. Integration tests run on the real local stack, started here if needed.

If Kafka or Elasticsearch cannot start, the ``stack`` fixture raises and every integration test
errors: nothing is skipped, nothing passes against a missing service.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings, StackSettings
from streams.stack import LocalStack
from tests.helpers import free_ports

ROOT = Path(__file__).resolve().parent.parent
STACK_REPORT: list[str] = []
TEST_KEY = "test-only-pseudonymisation-key-0123456789abcdef"
TEST_CHECKPOINT_KEY = "test-only-checkpoint-signing-key-fedcba9876543210"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which real servers the integration tests talked to (their own reported versions)."""
    if STACK_REPORT:
        terminalreporter.section("local stack")
        for line in STACK_REPORT:
            terminalreporter.write_line(line)


@dataclass(frozen=True)
class RunningStack:
    stack: LocalStack
    settings: StackSettings
    kafka_version: str
    es_version: str


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    settings = StackSettings()
    local = LocalStack(settings)

    def say(message: str) -> None:
        STACK_REPORT.append(message)

    started = local.up(progress=lambda m: None)
    say(f"started {', '.join(started)}" if started else "already running: reusing it")
    with urllib.request.urlopen(f"{settings.es_url}/", timeout=5) as response:
        banner = json.load(response)
    running = RunningStack(
        stack=local,
        settings=settings,
        kafka_version=local.kafka.reported_version(),
        es_version=banner["version"]["number"],
    )
    say(f"Apache Kafka {running.kafka_version} (KRaft) at {settings.kafka_bootstrap}")
    say(f"Elasticsearch {running.es_version} ({banner['cluster_name']}) at {settings.es_url}")
    for daemon in (local.alertmanager, local.prometheus):
        say(f"{daemon.name.capitalize()} {daemon.version()} at {daemon.url}")
    yield running
    if started and not os.environ.get("GUETTEUR_KEEP_STACK"):
        local.down(started)
        say(f"stopped {', '.join(started)} (set GUETTEUR_KEEP_STACK=1 to keep it running)")


@pytest.fixture
def isolated(stack: RunningStack, tmp_path: Path) -> Iterator[Settings]:
    """Settings with a topic, consumer group and indices of their own, removed afterwards."""
    from elasticsearch import NotFoundError
    from kafka import KafkaAdminClient

    from streams.elastic import sync_client
    from streams.history.templates import templates

    suffix = uuid.uuid4().hex[:10]
    env = {
        "GUETTEUR_APP_ID": f"test-{suffix}",
        "GUETTEUR_TOPIC_EVENTS": f"test-events-{suffix}",
        "GUETTEUR_TOPIC_DLQ": f"test-events-{suffix}-dlq",
        "GUETTEUR_TOPIC_ALERTS": f"test-events-{suffix}-alerts",
        "GUETTEUR_INDEX_PREFIX": f"test-{suffix}",
        "GUETTEUR_DATA_DIR": str(tmp_path / "worker"),
        "GUETTEUR_WEB_PORT": str(free_ports(1)[0]),
        "GUETTEUR_BATCH_SECONDS": "0.5",
        "GUETTEUR_PSEUDONYM_KEY_ID": "test",
        "GUETTEUR_PSEUDONYM_KEY": TEST_KEY,
        "GUETTEUR_CHECKPOINT_KEY_ID": "test",
        "GUETTEUR_CHECKPOINT_KEY": TEST_CHECKPOINT_KEY,
        # Tests share one Alertmanager: only the paging test pages.
        "GUETTEUR_PAGE_SEVERITIES": "off",
    }
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    settings = Settings()
    try:
        yield settings
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        client = sync_client(settings)
        # The node refuses wildcard deletes (action.destructive_requires_name): name each index.
        ours = list(client.indices.get(index=f"{settings.index_prefix}-*", allow_no_indices=True))
        if ours:
            client.indices.delete(index=",".join(ours))
        for template in templates(settings):
            with contextlib.suppress(NotFoundError):
                client.indices.delete_index_template(name=template)
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers())
        try:
            existing = set(admin.list_topics())
            doomed = [t for t in existing if t.startswith((settings.topic_events, settings.app_id))]
            if doomed:
                admin.delete_topics(doomed)
        finally:
            admin.close()

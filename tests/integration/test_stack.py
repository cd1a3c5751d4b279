"""The local stack runs the real servers: their own words say which versions answer."""

from __future__ import annotations

import json
import urllib.request

import pytest
from click.testing import CliRunner
from kafka import KafkaAdminClient

from streams.cli.main import cli
from streams.elastic import sync_client
from streams.settings import Settings
from tests.conftest import RunningStack

pytestmark = pytest.mark.integration


def test_kafka_answers_metadata_requests(stack: RunningStack) -> None:
    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka_bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    assert [b["port"] for b in cluster["brokers"]] == [stack.settings.kafka_port]
    assert stack.kafka_version.startswith("3.9.")


def test_elasticsearch_banner_and_client(stack: RunningStack) -> None:
    with urllib.request.urlopen(f"{stack.settings.es_url}/", timeout=5) as response:
        banner = json.load(response)
    assert banner["tagline"] == "You Know, for Search"
    assert banner["version"]["number"].startswith("8.")
    info = sync_client(Settings()).info()
    assert info["version"]["number"] == stack.es_version
    health = sync_client(Settings()).cluster.health()
    assert health["status"] in {"green", "yellow"}


def test_stack_status_json_reports_versions_ports_and_pids(stack: RunningStack) -> None:
    result = CliRunner().invoke(cli, ["stack", "status", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in map(json.loads, result.output.splitlines())}
    assert rows["kafka"]["running"] and rows["kafka"]["version"] == stack.kafka_version
    assert rows["elasticsearch"]["running"] and rows["elasticsearch"]["version"] == stack.es_version
    assert rows["kafka"]["address"].endswith(f":{stack.settings.kafka_port}")
    assert rows["elasticsearch"]["address"].endswith(f":{stack.settings.es_port}")
    assert all(isinstance(row["pid"], int) for row in rows.values())

"""detectors/ stays pure: no Kafka, Faust, Elasticsearch, Prometheus or streams imports."""

from __future__ import annotations

import ast
from pathlib import Path

DETECTORS = Path(__file__).resolve().parents[2] / "detectors"
FORBIDDEN = {
    "faust",
    "mode",
    "aiokafka",
    "kafka",
    "elasticsearch",
    "elastic_transport",
    "prometheus_client",
    "streams",
    "aiohttp",
    "requests",
    "httpx",
    "urllib",
    "socket",
}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_detectors_import_no_io_library() -> None:
    files = sorted(DETECTORS.rglob("*.py"))
    assert files, "detectors/ has no Python file"
    offenders = {
        str(path.relative_to(DETECTORS)): sorted(_imported_roots(path) & FORBIDDEN)
        for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_itself_catches_an_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from kafka import KafkaConsumer\nimport streams.app\n")
    assert _imported_roots(bad) & FORBIDDEN == {"kafka", "streams"}

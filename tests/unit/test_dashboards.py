"""Dashboards are data: they parse, and every field or metric they use exists where the worker
writes it (the index templates, the metrics module). Renaming a field breaks a test here, not a
dashboard in production."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from detectors.registry import RULE_IDS
from streams import metrics
from streams.history.templates import alerts_template, history_template, mapped_fields
from streams.settings import Settings
from tests.unit.test_monitoring_config import defined_metrics, metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
GRAFANA = DASHBOARDS / "grafana" / "dashboards" / "guetteur.json"
KIBANA = DASHBOARDS / "kibana" / "guetteur.ndjson"


def _kibana_objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in KIBANA.read_text().splitlines() if line.strip()]


MAPPED = {
    "guetteur-access-history": mapped_fields(history_template(Settings())),
    "guetteur-alerts": mapped_fields(alerts_template(Settings())),
}


@pytest.mark.parametrize(
    "path", sorted(p for p in DASHBOARDS.rglob("*") if p.is_file() and p.suffix != ".md")
)
def test_every_dashboard_file_parses(path: Path) -> None:
    text = path.read_text()
    if path.suffix == ".json":
        json.loads(text)
    elif path.suffix == ".ndjson":
        assert [json.loads(line) for line in text.splitlines() if line.strip()]
    elif path.suffix in {".yml", ".yaml"}:
        assert yaml.safe_load(text) is not None
    else:
        pytest.fail(f"unexpected file in dashboards/: {path.name}")


def _grafana_exprs() -> list[str]:
    dashboard = json.loads(GRAFANA.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_grafana_panels_use_only_metrics_the_worker_defines() -> None:
    exprs = " ".join(_grafana_exprs())
    used = metric_names(exprs)
    assert used and used - defined_metrics() == set()


def test_grafana_panels_group_by_labels_the_metrics_have() -> None:
    labels = {"instance", "job", "le"}  # added by Prometheus (le: histogram buckets)
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            labels |= set(metric._labelnames)
    grouped = {
        label.strip()
        for expr in _grafana_exprs()
        for group in re.findall(r"by \(([^)]*)\)", expr)
        for label in group.split(",")
    }
    assert grouped - labels == set()


def test_kibana_references_resolve() -> None:
    objects = _kibana_objects()
    ids = {(o["type"], o["id"]) for o in objects}
    dangling = [
        (o["id"], ref["type"], ref["id"])
        for o in objects
        for ref in o.get("references", [])
        if (ref["type"], ref["id"]) not in ids
    ]
    assert dangling == []


def _used_fields(obj: dict[str, Any]) -> set[str]:
    attributes = obj["attributes"]
    used = set(attributes.get("columns", []))
    used |= {field for field, _ in attributes.get("sort", [])}
    if "visState" in attributes:
        aggs = json.loads(attributes["visState"])["aggs"]
        used |= {agg["params"]["field"] for agg in aggs if "field" in agg["params"]}
    source = json.loads(attributes.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON", "{}"))
    query = source.get("query", {}).get("query", "")
    used |= set(re.findall(r"([\w.@]+):", query))
    return used


def test_every_field_a_kibana_object_uses_is_mapped() -> None:
    unknown = []
    for obj in _kibana_objects():
        views = [r["id"] for r in obj.get("references", []) if r["type"] == "index-pattern"]
        for view in views:
            unknown += [(obj["id"], f) for f in _used_fields(obj) if f not in MAPPED[view]]
    assert unknown == []


def test_kibana_ships_data_views_a_dashboard_a_triage_table_and_a_search_per_rule() -> None:
    objects = {(o["type"], o["id"]): o for o in _kibana_objects()}
    assert ("index-pattern", "guetteur-access-history") in objects
    assert ("index-pattern", "guetteur-alerts") in objects
    assert ("dashboard", "guetteur-overview") in objects
    assert ("search", "guetteur-alert-triage") in objects
    searches = [o for (kind, _), o in objects.items() if kind == "search"]
    queries = " ".join(
        o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"] for o in searches
    )
    assert [rule for rule in RULE_IDS if f'rule_id:\\"{rule}\\"' not in queries] == []


def test_the_paging_link_opens_the_shipped_alerts_data_view() -> None:
    from streams.paging import kibana_link

    assert "dataViewId:guetteur-alerts" in kibana_link(Settings(), "abc")

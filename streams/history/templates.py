"""The index templates (history, its checkpoints, alerts), versioned as JSON beside this module.

Templates rather than explicit index creation: a monthly index appears by itself on the first
write of its month, already strictly mapped and attached to the read alias.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elasticsearch import Elasticsearch

from streams.settings import Settings


def _load(name: str) -> dict[str, Any]:
    text = resources.files("streams.history").joinpath("templates", f"{name}.json").read_text()
    body: dict[str, Any] = json.loads(text)
    body.pop("_comment", None)
    return body


def history_template(settings: Settings) -> dict[str, Any]:
    body = _load("access-history")
    body["index_patterns"] = [f"{settings.history_index}-*"]
    body["template"]["aliases"] = {settings.history_index: {}}
    return body


def checkpoint_template(settings: Settings) -> dict[str, Any]:
    body = _load("access-checkpoints")
    body["index_patterns"] = [settings.checkpoint_index]
    return body


def alerts_template(settings: Settings) -> dict[str, Any]:
    body = _load("alerts")
    body["index_patterns"] = [settings.alerts_index]
    return body


def _single(name: str, index: str) -> dict[str, Any]:
    body = _load(name)
    body["index_patterns"] = [index]
    return body


def mapped_fields(template: dict[str, Any]) -> set[str]:
    """Every leaf field a template maps, as dotted paths (``health.patient.pseudonym``): what
    documents, queries and dashboards may use."""

    def walk(properties: dict[str, Any], prefix: str) -> set[str]:
        found = set()
        for name, spec in properties.items():
            if "properties" in spec:
                found |= walk(spec["properties"], f"{prefix}{name}.")
            else:
                found.add(f"{prefix}{name}")
        return found

    return walk(template["template"]["mappings"]["properties"], "")


def templates(settings: Settings) -> dict[str, dict[str, Any]]:
    """Template name -> body. Names carry the prefix, so two deployments can share a cluster."""
    return {
        settings.history_index: history_template(settings),
        settings.checkpoint_index: checkpoint_template(settings),
        settings.alerts_index: alerts_template(settings),
        settings.triage_index: _single("alert-triage", settings.triage_index),
        settings.tokens_index: _single("api-tokens", settings.tokens_index),
        settings.exception_log_index: _single("exception-log", settings.exception_log_index),
    }


class HistorySetupError(Exception):
    """Elasticsearch cannot hold the history as configured; the message says what to do."""


def install(client: Elasticsearch, settings: Settings) -> None:
    for name, body in templates(settings).items():
        client.indices.put_index_template(name=name, **body)
        _add_new_fields(client, body)


def _add_new_fields(client: Elasticsearch, body: dict[str, Any]) -> None:
    """A template reaches only new indices: give the existing ones the fields a new template
    version added (mappings only grow; an incompatible change fails here, loudly)."""
    for pattern in body["index_patterns"]:
        existing = client.indices.get(index=pattern, allow_no_indices=True, ignore_unavailable=True)
        if existing:
            properties = body["template"]["mappings"]["properties"]
            client.indices.put_mapping(index=",".join(existing), properties=properties)


def prepare(client: Elasticsearch, settings: Settings, wait: float = 60.0) -> None:
    """Install the templates before the worker consumes anything; wait a while for the node.

    A plain index squatting the alias name (left by an earlier version, or created by hand)
    would make every monthly index fail to create: refuse to start instead of retrying forever.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            _refuse_plain_index(client, settings.history_index)
            install(client, settings)
            return
        except TransportConnectionError as exc:
            if time.monotonic() > deadline:
                raise HistorySetupError(
                    f"cannot reach Elasticsearch at {settings.elasticsearch_url()} after "
                    f"{wait:.0f}s ({exc.message}); check GUETTEUR_ES_URL or start the local "
                    "stack with `guetteur stack up`"
                ) from None
            time.sleep(2)


def _refuse_plain_index(client: Elasticsearch, alias: str) -> None:
    if client.indices.exists(index=alias) and not client.indices.exists_alias(name=alias):
        raise HistorySetupError(
            f"Elasticsearch has a plain index named {alias!r}, where the history needs an alias "
            f"over monthly indices ({alias}-YYYY.MM); it was probably written by an earlier "
            "version. Reindex its documents into monthly indices or delete it "
            f"(`curl -X DELETE <es>/{alias}`), then start again."
        )

"""The index templates of the history and its checkpoints, versioned as JSON beside this module.

Templates rather than explicit index creation: a monthly index appears by itself on the first
write of its month, already strictly mapped and attached to the read alias.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from elasticsearch import AsyncElasticsearch, Elasticsearch

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


def templates(settings: Settings) -> dict[str, dict[str, Any]]:
    """Template name -> body. Names carry the prefix, so two deployments can share a cluster."""
    return {
        settings.history_index: history_template(settings),
        settings.checkpoint_index: checkpoint_template(settings),
    }


def install(client: Elasticsearch, settings: Settings) -> None:
    for name, body in templates(settings).items():
        client.indices.put_index_template(name=name, **body)


async def install_async(client: AsyncElasticsearch, settings: Settings) -> None:
    for name, body in templates(settings).items():
        await client.indices.put_index_template(name=name, **body)

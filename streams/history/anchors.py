"""Signed checkpoints kept outside Elasticsearch too, so that deleting them there is detected.

Whoever can write to Elasticsearch can delete the checkpoint index; ``verify`` then had no head
to compare the chains with, and reported nothing. Each signed record is therefore also written
to anchors the history's writers cannot reach through Elasticsearch:

- a compacted Kafka topic (``Settings.checkpoint_topic``). Chain heads are keyed by partition,
  so compaction keeps the newest signed head of each chain (an older one proves nothing the
  newer does not); retention records are keyed by their own id and all kept;
- optionally a file of JSON lines (``GUETTEUR_CHECKPOINT_FILE``), for append-only or remote
  storage.

``verify`` reads the anchors beside the index: a record anchored but missing from the index, or
differing from it, is a finding, and the chain heads are checked against both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.producer import Record, publish_records
from streams.settings import Settings
from streams.topics import read_topic

HEADS = "heads"

Send = Callable[[bytes, bytes], Awaitable[None]]


@dataclass(frozen=True)
class Anchored:
    """A signed record as an anchor holds it."""

    doc_id: str
    document: dict[str, Any]  # as indexed: {"@timestamp", "checkpoint": {...}}
    anchor: str  # "kafka" or the file's path


def message_keys(body: dict[str, Any], doc_id: str) -> list[bytes]:
    if body["kind"] == HEADS:
        return [f"{HEADS}/{partition}".encode() for partition in body["heads"]]
    return [f"{body['kind']}/{doc_id}".encode()]


def message(doc_id: str, document: dict[str, Any]) -> bytes:
    return json.dumps({"id": doc_id, "document": document}, sort_keys=True).encode()


def append_to_file(path: Path, doc_id: str, document: dict[str, Any]) -> None:
    """One line per record, flushed to disk before the checkpoint counts as written."""
    with path.open("ab") as out:
        out.write(message(doc_id, document) + b"\n")
        out.flush()
        os.fsync(out.fileno())


async def anchor(
    settings: Settings, send: Send, doc_id: str, body: dict[str, Any], doc: dict[str, Any]
) -> None:
    """The worker's way: ``send`` is acknowledged by Kafka before this returns."""
    value = message(doc_id, doc)
    for key in message_keys(body, doc_id):
        await send(key, value)
    if settings.checkpoint_file is not None:
        append_to_file(settings.checkpoint_file, doc_id, doc)


def anchor_sync(settings: Settings, doc_id: str, body: dict[str, Any], doc: dict[str, Any]) -> None:
    """The CLI's way (retention records), acknowledged before returning."""
    value = message(doc_id, doc)
    records = [Record(value, key) for key in message_keys(body, doc_id)]
    publish_records(settings, settings.checkpoint_topic, records)
    if settings.checkpoint_file is not None:
        append_to_file(settings.checkpoint_file, doc_id, doc)


def read_anchored(settings: Settings) -> Iterator[Anchored]:
    """Every record the anchors hold (the same record may come several times)."""
    for record in read_topic(settings, settings.checkpoint_topic, "guetteur-verify"):
        yield _parsed(record.value or b"", "kafka")
    path = settings.checkpoint_file
    if path is not None and path.is_file():
        with path.open("rb") as lines:
            for line in lines:
                if line.strip():
                    yield _parsed(line, str(path))


def _parsed(raw: bytes, where: str) -> Anchored:
    try:
        value = json.loads(raw)
        return Anchored(str(value["id"]), dict(value["document"]), where)
    except (ValueError, KeyError, TypeError):
        return Anchored("?", {}, where)  # unreadable: checked (and reported) as a bad signature

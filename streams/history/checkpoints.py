"""Signed records of the chains: checkpoints of their heads, and what retention removed.

Hash chains alone show that something changed, not that nothing was rewritten from scratch:
whoever can write to Elasticsearch can recompute every hash after a forgery. A checkpoint fixes
the chain heads at a moment under an HMAC signature whose key lives apart from the data (and
apart from the pseudonymisation key), so a rewritten or truncated chain no longer matches it.

The signed body is stored verbatim as a string: the signature checks those exact bytes, with no
dependence on how Elasticsearch or a JSON library re-serialises it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from elasticsearch import AsyncElasticsearch, Elasticsearch, NotFoundError
from elasticsearch.helpers import scan

from streams import metrics
from streams.backoff import Backoff
from streams.history import anchors
from streams.history.chain import Link, canonical
from streams.keys import Key, KeySource, load_keys
from streams.settings import ConfigError, Settings

log = logging.getLogger(__name__)

HEADS = anchors.HEADS
RETENTION = "retention"


def load_checkpoint_keys(settings: Settings) -> list[Key]:
    source = KeySource(
        "GUETTEUR_CHECKPOINT_KEY",
        settings.checkpoint_key,
        settings.checkpoint_key_id,
        settings.checkpoint_key_file,
    )
    return load_keys(
        source,
        demo=settings.demo,
        demo_file=settings.demo_checkpoint_key_file(),
        purpose="checkpoint signing",
    )


def ensure_separate(checkpoint_keys: list[Key], pseudonym_keys: list[Key]) -> None:
    """One secret must not serve both purposes (see the module docstring)."""
    shared = {k.secret for k in checkpoint_keys} & {k.secret for k in pseudonym_keys}
    if shared:
        raise ConfigError(
            "GUETTEUR_CHECKPOINT_KEY: the checkpoint key must differ from the pseudonymisation "
            "key; generate another (e.g. `openssl rand -hex 32`)"
        )


def signed_document(key: Key, body: dict[str, Any]) -> dict[str, Any]:
    text = canonical(body).decode()
    return {
        "@timestamp": body["created_at"],
        "checkpoint": {
            "kind": body["kind"],
            "app_id": body["app_id"],
            "key_id": key.key_id,
            "signature": key.mac(text.encode()),
            "body": text,
        },
    }


def heads_body(app_id: str, heads: dict[int, Link], now: datetime) -> dict[str, Any]:
    return {
        "kind": HEADS,
        "app_id": app_id,
        "created_at": now.astimezone(UTC).isoformat(),
        "heads": {str(p): {"seq": h.seq, "hash": h.hash} for p, h in sorted(heads.items())},
    }


@dataclass(frozen=True)
class SignedRecord:
    """A checkpoint or retention record read back, with whether its signature holds."""

    doc_id: str
    body: dict[str, Any]
    valid: bool
    problem: str | None = None

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "?"))


def check(doc_id: str, source: dict[str, Any], keys: dict[str, Key]) -> SignedRecord:
    fields = source.get("checkpoint", {})
    text = str(fields.get("body", ""))
    try:
        body = json.loads(text)
    except ValueError:
        return SignedRecord(doc_id, {}, False, "its body is not JSON")
    key = keys.get(str(fields.get("key_id")))
    if key is None:
        return SignedRecord(
            doc_id, body, False, f"signed with unknown key {fields.get('key_id')!r}"
        )
    if not hmac.compare_digest(key.mac(text.encode()), str(fields.get("signature", ""))):
        return SignedRecord(doc_id, body, False, "its signature does not match its body")
    return SignedRecord(doc_id, body, True)


def read_indexed(client: Elasticsearch, settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """Every record of the checkpoint index, oldest first: (id, source), signatures unchecked."""
    try:
        client.indices.refresh(index=settings.checkpoint_index)
    except NotFoundError:
        return []
    hits = scan(
        client,
        index=settings.checkpoint_index,
        query={"sort": [{"@timestamp": "asc"}]},
        preserve_order=True,
    )
    return [(hit["_id"], hit["_source"]) for hit in hits]


def read_signed(client: Elasticsearch, settings: Settings, keys: list[Key]) -> list[SignedRecord]:
    """Every record of the checkpoint index, oldest first, each with its signature checked."""
    by_id = {k.key_id: k for k in keys}
    return [check(doc_id, source, by_id) for doc_id, source in read_indexed(client, settings)]


def record_id(body: dict[str, Any]) -> str:
    """Deterministic: the same record written twice (a retried request) is one document."""
    about = f"-{body['index']}" if "index" in body else ""
    return f"{body['kind']}-{body['app_id']}-{body['created_at']}{about}"


def write_signed(client: Elasticsearch, settings: Settings, key: Key, body: dict[str, Any]) -> str:
    """Indexed, then anchored outside Elasticsearch (``anchors``), both acknowledged."""
    doc_id = record_id(body)
    document = signed_document(key, body)
    client.index(index=settings.checkpoint_index, id=doc_id, document=document, refresh="wait_for")
    anchors.anchor_sync(settings, doc_id, body, document)
    return doc_id


class Checkpointer:
    """Writes the worker's chain heads, signed, at most every ``checkpoint_seconds``."""

    def __init__(
        self,
        client: AsyncElasticsearch,
        settings: Settings,
        key: Key,
        send: anchors.Send,
        backoff: Backoff | None = None,
    ):
        """``send(key, value)``: to the checkpoint topic, acknowledged (the anchor in Kafka)."""
        self.client = client
        self.settings = settings
        self.key = key
        self.send = send
        self.backoff = backoff or Backoff()
        self.last_written: datetime | None = None
        self.last_heads: dict[int, Link] = {}

    def due(self, now: datetime) -> bool:
        if self.last_written is None:
            return True
        return (now - self.last_written).total_seconds() >= self.settings.checkpoint_seconds

    async def maybe_write(self, heads: dict[int, Link], now: datetime) -> bool:
        if heads == self.last_heads or not heads or not self.due(now):
            return False
        await self.write(heads, now)
        return True

    async def write_last(self, heads: dict[int, Link], now: datetime, timeout: float = 5) -> None:
        """On the way out: one bounded try (a stop must not hang on a dead Elasticsearch)."""
        if not heads or heads == self.last_heads:
            return
        try:
            await asyncio.wait_for(self._index(heads, now), timeout)
        except Exception as exc:  # the next worker's checkpoints will cover these heads
            log.warning("last checkpoint not written", extra={"error": str(exc)[:500]})

    async def write(self, heads: dict[int, Link], now: datetime) -> None:
        await self.backoff.call("checkpoint", partial(self._index, heads, now))

    async def _index(self, heads: dict[int, Link], now: datetime) -> None:
        body = heads_body(self.settings.app_id, heads, now)
        doc_id = record_id(body)
        document = signed_document(self.key, body)
        # The index first: an anchored record missing from the index reads as a deletion.
        # Both writes are idempotent (same id, same key), so a retry repeats them safely.
        await self.client.index(index=self.settings.checkpoint_index, id=doc_id, document=document)
        await anchors.anchor(self.settings, self.send, doc_id, body, document)
        self.last_written, self.last_heads = now, dict(heads)
        metrics.CHECKPOINTS.inc()
        log.info(
            "checkpoint written",
            extra={"checkpoint.partitions": len(heads), "checkpoint.id": doc_id},
        )

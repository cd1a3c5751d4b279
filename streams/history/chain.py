"""Keyed hash chains over the history, one per partition of the events topic (pure, no I/O).

Each document carries ``guetteur.chain``: where it was read from (topic, partition, offset),
its sequence number in that partition's chain, the link to the previous document (``prev``),
the id of the key that sealed it, and ``hash``: HMAC-SHA256 under the checkpoint key over the
document's canonical JSON (everything but ``hash`` itself).

Why keyed: a plain SHA-256 can be computed by anyone with write access to Elasticsearch, so a
record appended at a chain head with a correct plain hash passed every check, and the worker
then chained real events after it. Under a MAC, appending, editing or re-ordering a record
needs the key, which lives apart from the data. Editing a document breaks its own MAC; deleting
one leaves a gap in the sequence; the signed checkpoints (``checkpoints``) and their anchors
outside Elasticsearch catch what is deleted at a chain's end.

One chain per partition, because a partition is the unit one worker owns: the worker that owns it
is the only writer of its chain, so no coordination is needed between workers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streams.keys import Key

GENESIS = "0" * 64


@dataclass(frozen=True)
class Link:
    """A chain position: the head a new document links to."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Position:
    """Where a record was read from in Kafka: what ``verify`` cross-checks it against."""

    topic: str
    partition: int
    offset: int


START = Link(0, GENESIS)


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_fields(document: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = document.get("guetteur", {}).get("chain", {})
    return fields


def unsealed(document: dict[str, Any]) -> bytes:
    """What the MAC covers: the document's canonical JSON without its own ``hash``."""
    bare = dict(document)
    guetteur = dict(bare.get("guetteur", {}))
    guetteur["chain"] = {k: v for k, v in chain_fields(document).items() if k != "hash"}
    bare["guetteur"] = guetteur
    return canonical(bare)


def seal(document: dict[str, Any], key: Key) -> str:
    """The MAC a document should carry under ``key``."""
    return key.mac(unsealed(document))


def link(
    document: dict[str, Any], at: Position, head: Link, key: Key
) -> tuple[dict[str, Any], Link]:
    """The document chained after ``head``, and the new head."""
    chained, _, new_head = link_encoded(document, at, head, key)
    return chained, new_head


_CHAIN_OPENS = b'"guetteur":{"chain":{'


def link_encoded(
    document: dict[str, Any], at: Position, head: Link, key: Key
) -> tuple[dict[str, Any], bytes, Link]:
    """``link``, plus the chained document's canonical JSON, which is what gets stored: one
    encoding serves the MAC and the write (encoding was the history's largest cost).

    The MAC covers the document without its ``hash`` field; with sorted keys, ``hash`` is the
    first key of the chain object, so the stored JSON is the sealed JSON with it inserted there.
    The first ``"guetteur":{"chain":{`` is ours: only ``@timestamp`` and ``event`` sort before
    ``guetteur``, both written by us, and a quote inside a JSON string is always escaped.
    """
    chain = {
        "key_id": key.key_id,
        "offset": at.offset,
        "partition": at.partition,
        "prev": head.hash,
        "seq": head.seq + 1,
        "topic": at.topic,
    }
    chained = {**document, "guetteur": {"chain": chain}}
    bare = canonical(chained)
    own = key.mac(bare)
    chain["hash"] = own
    at_hash = bare.index(_CHAIN_OPENS) + len(_CHAIN_OPENS)
    encoded = bare[:at_hash] + b'"hash":"' + own.encode() + b'",' + bare[at_hash:]
    return chained, encoded, Link(head.seq + 1, own)

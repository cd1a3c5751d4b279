"""Hash chains over the history, one per partition of the events topic (pure, no I/O).

Each document carries ``guetteur.chain``: its partition, its sequence number in that partition's
chain, the hash of the previous document and its own hash, SHA-256 over its canonical JSON
(with ``prev`` inside, ``hash`` left out). Editing a document breaks its own hash; deleting one
leaves a gap in the sequence; recomputing hashes to hide either breaks the link to the next
document, and at the head the signed checkpoints (``checkpoints``) catch what is left.

One chain per partition, because a partition is the unit one worker owns: the worker that owns it
is the only writer of its chain, so no coordination is needed between workers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class Link:
    """A chain position: the head a new document links to."""

    seq: int
    hash: str


START = Link(0, GENESIS)


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_fields(document: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = document.get("guetteur", {}).get("chain", {})
    return fields


def digest(document: dict[str, Any]) -> str:
    """The hash a document should carry: over everything but its own ``hash``."""
    unhashed = dict(document)
    guetteur = dict(unhashed.get("guetteur", {}))
    guetteur["chain"] = {k: v for k, v in chain_fields(document).items() if k != "hash"}
    unhashed["guetteur"] = guetteur
    return hashlib.sha256(canonical(unhashed)).hexdigest()


def link(
    document: dict[str, Any], partition: int, offset: int, head: Link
) -> tuple[dict[str, Any], Link]:
    """The document chained after ``head``, and the new head."""
    chained, _, new_head = link_encoded(document, partition, offset, head)
    return chained, new_head


_CHAIN_OPENS = b'"guetteur":{"chain":{'


def link_encoded(
    document: dict[str, Any], partition: int, offset: int, head: Link
) -> tuple[dict[str, Any], bytes, Link]:
    """``link``, plus the chained document's canonical JSON, which is what gets stored: one
    encoding serves the hash and the write (encoding was the history's largest cost).

    The hash covers the document without its ``hash`` field; with sorted keys, ``hash`` is the
    first key of the chain object, so the stored JSON is the hashed JSON with it inserted there.
    The first ``"guetteur":{"chain":{`` is ours: only ``@timestamp`` and ``event`` sort before
    ``guetteur``, both written by us, and a quote inside a JSON string is always escaped.
    """
    chain = {"partition": partition, "offset": offset, "seq": head.seq + 1, "prev": head.hash}
    chained = {**document, "guetteur": {"chain": chain}}
    unhashed = canonical(chained)
    own = hashlib.sha256(unhashed).hexdigest()
    chain["hash"] = own
    at = unhashed.index(_CHAIN_OPENS) + len(_CHAIN_OPENS)
    encoded = unhashed[:at] + b'"hash":"' + own.encode() + b'",' + unhashed[at:]
    return chained, encoded, Link(head.seq + 1, own)

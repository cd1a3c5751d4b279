"""The access-history sink: deduplicated, chained, bulk-written, retried until acknowledged.

Order of work for a batch:
1. drop events already stored (same ``event_id``: a replay or a redelivery after a crash);
2. chain the rest per partition, after the head read from the history itself;
3. write them with ``create`` in one bulk request, retrying what Elasticsearch could not take
   yet; a document it refuses for good (it never should: the mapping follows the contract) goes
   back to the caller for the dead-letter topic, and the survivors are re-chained over the gap
   and rewritten, so the chain never points at a document that does not exist.

The chain head of a partition is state, but no Faust table holds it: the history does. It is read
back (after a refresh) the first time this worker touches the partition, and forgotten when the
partition moves to another worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from elasticsearch import AsyncElasticsearch, NotFoundError

from detectors.models import AccessEvent
from streams import metrics
from streams.backoff import Backoff
from streams.decode import Reason, Rejected
from streams.history.chain import START, Link, Position, chain_fields, link_encoded, seal
from streams.history.document import history_document, month_index
from streams.keys import Key
from streams.settings import Settings

log = logging.getLogger(__name__)

# Item statuses worth another try: the node is busy or briefly unavailable.
TRANSIENT = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Accepted:
    """A valid, pseudonymised event and where it was read from (its partition owns its place in
    the chain)."""

    partition: int
    offset: int
    event: AccessEvent

    @property
    def event_id(self) -> str:
        return self.event.event_id


@dataclass(frozen=True)
class Refused:
    """An accepted event that cannot be stored: it goes to the dead-letter topic."""

    accepted: Accepted
    error: str
    reason: Reason = Reason.HISTORY_REFUSED

    @property
    def rejected(self) -> Rejected:
        if self.reason is Reason.HISTORY_REFUSED:
            return Rejected(self.reason, f"Elasticsearch refused the document: {self.error}")
        return Rejected(self.reason, self.error)


@dataclass
class WriteResult:
    written: int = 0
    duplicates: int = 0
    refused: list[Refused] = field(default_factory=list)


@dataclass(frozen=True)
class _Pending:
    accepted: Accepted
    index: str
    document: dict[str, Any]
    encoded: bytes  # the document's canonical JSON, as hashed and as stored

    @property
    def chain_hash(self) -> str:
        return str(chain_fields(self.document)["hash"])


class ChainHeads:
    """Chain heads of the partitions this worker writes, by partition number."""

    def __init__(self) -> None:
        self.heads: dict[int, Link] = {}

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self.heads.pop(partition, None)


class HistoryWriter:
    def __init__(
        self,
        client: AsyncElasticsearch,
        settings: Settings,
        heads: ChainHeads,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        fingerprints: Mapping[str, str] | None = None,
        *,
        chain_keys: Sequence[Key],
    ):
        """``chain_keys``: the checkpoint keyring, current key first (it seals new records; the
        older ones check heads sealed before a rotation)."""
        self.client = client
        self.chain_key = chain_keys[0]
        self.chain_keys = {key.key_id: key for key in chain_keys}
        self.fingerprints = fingerprints or {}
        self.settings = settings
        self.heads = heads
        self.backoff = backoff or Backoff()
        self.clock = clock

    async def write(self, batch: Sequence[Accepted]) -> WriteResult:
        result = WriteResult()
        ingested = self.clock()
        # event id -> (monthly index, document), built once per event.
        documents: dict[str, tuple[str, dict[str, Any]]] = {}
        buildable = []
        for accepted in batch:
            try:
                documents[accepted.event_id] = (
                    month_index(self.settings, accepted.event),
                    history_document(accepted.event, ingested, self.fingerprints),
                )
            except Exception as exc:  # one event we cannot store must not cost the batch
                log.exception("history document failed", extra={"event.id": accepted.event_id})
                error = f"history document could not be built ({type(exc).__name__})"
                result.refused.append(Refused(accepted, error, Reason.UNPROCESSABLE))
            else:
                buildable.append(accepted)
        fresh = await self._not_yet_stored(buildable, documents)
        result.duplicates = len(buildable) - len(fresh)
        await self._load_heads({a.partition for a in fresh})
        operation = "create"
        while fresh:
            pending, heads = self._chain(fresh, documents)
            failures = await self._bulk(pending, operation)
            if not failures:
                self.heads.heads.update(heads)
                result.written = len(pending)
                break
            for accepted, error in failures:
                if error == "version_conflict_engine_exception":
                    result.duplicates += 1  # another partition stored the same event_id first
                else:
                    result.refused.append(Refused(accepted, error))
            failed = {accepted.event_id for accepted, _ in failures}
            fresh = [a for a in fresh if a.event_id not in failed]
            # Everything left was created by the call above, linked over a document that is not
            # there: overwrite it, re-chained.
            operation = "index"
        return result

    def _chain(
        self, batch: Sequence[Accepted], documents: dict[str, tuple[str, dict[str, Any]]]
    ) -> tuple[list[_Pending], dict[int, Link]]:
        heads = dict(self.heads.heads)
        pending = []
        for accepted in sorted(batch, key=lambda a: (a.partition, a.offset)):
            head = heads.get(accepted.partition, START)
            index, unlinked = documents[accepted.event_id]
            at = Position(self.settings.topic_events, accepted.partition, accepted.offset)
            document, encoded, heads[accepted.partition] = link_encoded(
                unlinked, at, head, self.chain_key
            )
            pending.append(_Pending(accepted, index, document, encoded))
        return pending, heads

    async def _not_yet_stored(
        self, batch: Sequence[Accepted], documents: dict[str, tuple[str, dict[str, Any]]]
    ) -> list[Accepted]:
        """The batch without repeated ``event_id``s and without those already in the history.

        ``mget`` is real-time (no refresh needed), so a redelivery right after a crash is caught.
        """
        unique: dict[str, Accepted] = {}
        for accepted in batch:
            unique.setdefault(accepted.event_id, accepted)
        if not unique:
            return []
        locations = [(documents[event_id][0], event_id) for event_id in unique]
        stored = await self._stored_ids(locations, fields=[])
        return [a for a in unique.values() if a.event_id not in stored]

    async def _stored_ids(
        self, locations: list[tuple[str, str]], fields: list[str]
    ) -> dict[str, dict[str, Any]]:
        """``_id`` -> the stored source's ``fields``, for the (index, id) pairs that exist."""
        docs = [{"_index": index, "_id": doc_id} for index, doc_id in locations]
        source: bool | list[str] = fields or False
        response = await self.backoff.call(
            "mget", partial(self.client.mget, docs=docs, source=source)
        )
        return {doc["_id"]: doc.get("_source", {}) for doc in response["docs"] if doc.get("found")}

    async def _load_heads(self, partitions: set[int]) -> None:
        missing = sorted(partitions - set(self.heads.heads))
        if not missing:
            return
        alias = self.settings.history_index
        await self.backoff.call("refresh", partial(self._refresh, alias))
        for partition in missing:
            head = await self.backoff.call("chain head", partial(self._head, alias, partition))
            self.heads.heads[partition] = head
            log.info(
                "chain head loaded", extra={"chain.partition": partition, "chain.seq": head.seq}
            )

    async def _refresh(self, alias: str) -> None:
        with contextlib.suppress(NotFoundError):  # no history yet
            await self.client.indices.refresh(index=alias)

    async def _head(self, alias: str, partition: int) -> Link:
        try:
            response = await self.client.search(
                index=alias,
                size=1,
                query={"term": {"guetteur.chain.partition": partition}},
                sort=[{"guetteur.chain.seq": "desc"}],
            )
        except NotFoundError:
            return START
        hits = response["hits"]["hits"]
        if not hits:
            return START
        source = hits[0]["_source"]
        fields = chain_fields(source)
        key = self.chain_keys.get(str(fields.get("key_id")))
        if key is None or seal(source, key) != fields.get("hash"):
            # Chained after anyway (refusing would stop the history); verify reports it.
            metrics.CHAIN_HEAD_FORGED.inc()
            log.error(
                "chain head fails its MAC: the history was written by someone without the key; "
                "run `guetteur verify`",
                extra={"chain.partition": partition, "chain.seq": fields.get("seq")},
            )
        return Link(int(fields["seq"]), str(fields["hash"]))

    async def _bulk(self, pending: list[_Pending], operation: str) -> list[tuple[Accepted, str]]:
        """Write ``pending``; retry what may pass later; return what Elasticsearch refused."""
        failures: list[tuple[Accepted, str]] = []
        attempt = 0
        while pending:
            operations: list[bytes] = []
            for item in pending:
                action = {operation: {"_index": item.index, "_id": item.accepted.event_id}}
                operations += (json.dumps(action).encode(), item.encoded)
            with metrics.ES_REQUEST_SECONDS.labels("history bulk").time():
                response = await self.backoff.call(
                    "bulk",
                    partial(
                        self.client.bulk,
                        operations=operations,  # type: ignore[arg-type]  # NDJSON lines
                        # Only what is read below: the full answer cost more to parse than
                        # the documents cost to send.
                        filter_path=["errors", "items.*.status", "items.*.error.type"],
                    ),
                )
            if not response["errors"]:
                return failures
            retry, conflicts = [], []
            for item, outcome in zip(pending, response["items"], strict=True):
                status = outcome[operation]["status"]
                if status < 300:
                    continue
                error = outcome[operation].get("error", {}).get("type", f"status {status}")
                if status in TRANSIENT:
                    retry.append(item)
                elif status == 409:
                    conflicts.append(item)
                else:
                    metrics.ES_REFUSED.labels("history").inc()
                    failures.append((item.accepted, error))
            failures += await self._foreign(conflicts)
            pending = retry
            if retry:
                await self.backoff.wait(
                    attempt, "bulk items", f"{len(retry)} items refused for now"
                )
                attempt += 1
        return failures

    async def _foreign(self, conflicts: list[_Pending]) -> list[tuple[Accepted, str]]:
        """Conflicts that are not our own earlier attempt (a retried request that had landed)."""
        if not conflicts:
            return []
        locations = [(c.index, c.accepted.event_id) for c in conflicts]
        stored = await self._stored_ids(locations, fields=["guetteur.chain.hash"])
        return [
            (c.accepted, "version_conflict_engine_exception")
            for c in conflicts
            if chain_fields(stored.get(c.accepted.event_id, {})).get("hash") != c.chain_hash
        ]

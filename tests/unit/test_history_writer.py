"""The sink's decisions, with Elasticsearch's answers scripted: retries, conflicts, refusals.

What Elasticsearch itself does with the writes is covered by the integration tests; here the
answers are chosen to reach every branch, including outages that are hard to stage for real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError

from detectors.models import AccessEvent
from streams.backoff import Backoff
from streams.history.chain import chain_fields
from streams.history.writer import Accepted, ChainHeads, HistoryWriter
from streams.keys import Key
from streams.settings import Settings
from tests.helpers import MINIMAL_EVENT

Answer = Callable[[list[dict[str, Any]]], dict[str, Any]]


class ScriptedElasticsearch:
    """Answers ``bulk`` from a script (one entry per call), remembers what it stored."""

    def __init__(self, bulk_answers: list[Answer]):
        self.bulk_answers = bulk_answers
        self.bulk_calls: list[list[dict[str, Any]]] = []
        self.stored: dict[str, dict[str, Any]] = {}
        self.indices = self

    async def refresh(self, index: str) -> None:
        return None

    async def search(self, **_: Any) -> dict[str, Any]:
        return {"hits": {"hits": []}}

    async def mget(self, docs: list[dict[str, Any]], source: bool | list[str]) -> dict[str, Any]:
        """As Elasticsearch answers: ``_source`` only if asked for (whole here)."""
        return {
            "docs": [
                {"_id": d["_id"], "found": True}
                | ({"_source": self.stored[d["_id"]]} if source else {})
                if d["_id"] in self.stored
                else {"_id": d["_id"], "found": False}
                for d in docs
            ]
        }

    async def bulk(self, operations: list[bytes], filter_path: list[str]) -> dict[str, Any]:
        """The NDJSON lines the writer sends, parsed; the answer filtered as it asked."""
        assert all(isinstance(line, bytes) for line in operations)
        parsed = [json.loads(line) for line in operations]
        self.bulk_calls.append(parsed)
        answer = self.bulk_answers.pop(0) if self.bulk_answers else accept_all
        response = answer(parsed)
        errors = any(next(iter(item.values()))["status"] >= 300 for item in response["items"])
        assert "errors" in filter_path
        return {"errors": errors, "items": response["items"]}


def _pairs(operations: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for action, document in zip(operations[::2], operations[1::2], strict=True):
        ((op, meta),) = action.items()
        out.append((op, meta["_id"], document))
    return out


def accept_all(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return statuses(lambda _id: 201)(operations)


def statuses(status_of: Callable[[str], int], store: dict[str, Any] | None = None) -> Answer:
    def answer(operations: list[dict[str, Any]]) -> dict[str, Any]:
        items = []
        for op, doc_id, document in _pairs(operations):
            status = status_of(doc_id)
            if status < 300 and store is not None:
                store[doc_id] = document
            error = {} if status < 300 else {"error": {"type": f"error_{status}"}}
            items.append({op: {"_id": doc_id, "status": status, **error}})
        return {"items": items}

    return answer


def fail_once(_: list[dict[str, Any]]) -> dict[str, Any]:
    raise TransportConnectionError("connection refused")


def _writer(client: ScriptedElasticsearch, sleeps: list[float]) -> HistoryWriter:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return HistoryWriter(
        client,  # type: ignore[arg-type]
        Settings(index_prefix="t"),
        ChainHeads(),
        Backoff(initial=0.5, maximum=4, sleep=sleep),
        chain_keys=[Key("c1", b"chain-key-for-tests-0123456789abcdef")],
    )


def _batch(count: int, partition: int = 0) -> list[Accepted]:
    return [
        Accepted(
            partition,
            n,
            AccessEvent.model_validate_json(json.dumps({**MINIMAL_EVENT, "event_id": f"e-{n}"})),
        )
        for n in range(count)
    ]


def _seqs(operations: list[dict[str, Any]]) -> list[int]:
    return [chain_fields(document)["seq"] for _, _, document in _pairs(operations)]


def test_an_outage_is_waited_out_with_growing_pauses() -> None:
    client = ScriptedElasticsearch([fail_once, fail_once, fail_once, fail_once])
    sleeps: list[float] = []
    result = asyncio.run(_writer(client, sleeps).write(_batch(3)))
    assert result.written == 3
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # capped at the maximum


def test_items_refused_for_now_are_retried_alone() -> None:
    busy = statuses(lambda doc_id: 429 if doc_id == "e-1" else 201)
    client = ScriptedElasticsearch([busy])
    sleeps: list[float] = []
    result = asyncio.run(_writer(client, sleeps).write(_batch(3)))
    assert result.written == 3 and result.refused == []
    assert [doc_id for _, doc_id, _ in _pairs(client.bulk_calls[1])] == ["e-1"]
    assert sleeps == [0.5]


def test_a_refused_document_is_handed_back_and_the_chain_closed_over_it() -> None:
    client = ScriptedElasticsearch([statuses(lambda d: 400 if d == "e-1" else 201)])
    result = asyncio.run(_writer(client, []).write(_batch(4)))
    assert [(r.accepted.event_id, r.error) for r in result.refused] == [("e-1", "error_400")]
    assert result.written == 3
    first, second = client.bulk_calls
    assert _seqs(first) == [1, 2, 3, 4]
    assert [op for op, _, _ in _pairs(second)] == ["index"] * 3  # rewritten in place...
    assert _seqs(second) == [1, 2, 3]  # ...without a hole


def test_our_own_landed_write_seen_again_as_a_conflict_is_not_a_duplicate() -> None:
    client = ScriptedElasticsearch([])
    # e-1 lands but its answer is a 503; the retry then meets e-1 already there.
    client.bulk_answers = [_landed_but_lost(client, "e-1"), statuses(lambda d: 409)]
    result = asyncio.run(_writer(client, []).write(_batch(2)))
    assert result.written == 2 and result.duplicates == 0 and result.refused == []


def _landed_but_lost(client: ScriptedElasticsearch, doc_id: str) -> Answer:
    def answer(operations: list[dict[str, Any]]) -> dict[str, Any]:
        for _, landed, document in _pairs(operations):
            if landed == doc_id:
                client.stored[landed] = document
        return statuses(lambda d: 503 if d == doc_id else 201)(operations)

    return answer


def test_events_already_stored_or_repeated_in_the_batch_are_not_written_again() -> None:
    client = ScriptedElasticsearch([])
    client.stored["e-0"] = {"already": "there"}
    batch = _batch(3)
    result = asyncio.run(_writer(client, []).write([*batch, batch[2]]))
    assert result.duplicates == 2 and result.written == 2
    assert [doc_id for _, doc_id, _ in _pairs(client.bulk_calls[0])] == ["e-1", "e-2"]


def test_the_chain_continues_from_one_batch_to_the_next() -> None:
    client = ScriptedElasticsearch([])
    writer = _writer(client, [])
    asyncio.run(writer.write(_batch(2)))
    asyncio.run(writer.write([Accepted(0, 5, _batch(6)[5].event)]))
    assert _seqs(client.bulk_calls[1]) == [3]
    assert writer.heads.heads[0].seq == 3

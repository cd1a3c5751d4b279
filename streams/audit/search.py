"""Every document matching a query, however many: a point in time and ``search_after``.

A plain search stops at 10,000 hits and can skip or repeat documents while the index changes; a
point in time freezes the view for the whole walk and ``search_after`` pages through it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from streams.audit.query import Filters, history_query
from streams.settings import Settings

PAGE = 1000


def search_history(
    client: Elasticsearch, settings: Settings, filters: Filters, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """History documents (``_source``) matching ``filters``, oldest first."""
    yield from search_all(client, settings.history_index, history_query(filters), limit)


def search_all(
    client: Elasticsearch, index: str, query: dict[str, Any], limit: int | None = None
) -> Iterator[dict[str, Any]]:
    try:
        pit = client.open_point_in_time(index=index, keep_alive="2m")["id"]
    except NotFoundError:
        return
    returned = 0
    after: list[Any] | None = None
    try:
        while limit is None or returned < limit:
            size = PAGE if limit is None else min(PAGE, limit - returned)
            response = client.search(
                pit={"id": pit, "keep_alive": "2m"},
                query=query,
                sort=[{"@timestamp": "asc"}, {"_shard_doc": "asc"}],
                size=size,
                search_after=after,
                track_total_hits=False,
            )
            hits = response["hits"]["hits"]
            if not hits:
                return
            pit = response.get("pit_id", pit)
            for hit in hits:
                yield hit["_source"]
            returned += len(hits)
            after = hits[-1]["sort"]
    finally:
        client.close_point_in_time(id=pit)


def search_page(
    client: Elasticsearch,
    index: str,
    query: dict[str, Any],
    sort: list[dict[str, str]],
    size: int,
    after: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of documents and the cursor of the next one (None: that was the last).

    For an API caller who pages at its own pace: no point in time to keep alive between its
    requests, so the sort ends on a unique field (the document's id) and the cursor is the
    last document's sort values. A page never stops short silently: no cursor means no more.
    """
    try:
        response = client.search(
            index=index,
            query=query,
            sort=sort,
            size=size + 1,  # one more: is there a next page?
            search_after=decode_cursor(after) if after else None,
            track_total_hits=False,
        )
    except NotFoundError:
        return [], None
    hits = response["hits"]["hits"]
    more = len(hits) > size
    hits = hits[:size]
    cursor = encode_cursor(hits[-1]["sort"]) if more and hits else None
    return [hit["_source"] for hit in hits], cursor


class BadCursorError(ValueError):
    pass


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def decode_cursor(cursor: str) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        raise BadCursorError("after: not a cursor this API gave") from None
    if not isinstance(values, list):
        raise BadCursorError("after: not a cursor this API gave")
    return values

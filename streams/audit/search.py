"""Every document matching a query, however many: a point in time and ``search_after``.

A plain search stops at 10,000 hits and can skip or repeat documents while the index changes; a
point in time freezes the view for the whole walk and ``search_after`` pages through it.
"""

from __future__ import annotations

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

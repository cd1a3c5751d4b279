"""The access history in Elasticsearch: one document per accepted event, written in bulk.

Document ids are the producer's ``event_id``, so a replayed event overwrites itself instead of
appearing twice: the history stays a faithful count of accesses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk

from detectors.models import AccessEvent
from streams.pseudonym import Pseudonymizer


def history_document(event: AccessEvent, pseudonymizer: Pseudonymizer) -> dict[str, Any]:
    """The stored form of an event: the raw ``patient_id`` is replaced by its keyed pseudonym."""
    document = event.model_dump(mode="json", exclude_none=True, exclude={"patient_id"})
    document["@timestamp"] = document["timestamp"]
    if event.patient_id is not None:
        document["patient_pseudonym"] = pseudonymizer.pseudonym(event.patient_id)
    return document


class HistoryWriter:
    def __init__(self, client: AsyncElasticsearch, index: str, pseudonymizer: Pseudonymizer):
        self.client = client
        self.index = index
        self.pseudonymizer = pseudonymizer

    async def write(self, events: Iterable[AccessEvent]) -> int:
        actions = [
            {
                "_index": self.index,
                "_id": event.event_id,
                "_source": history_document(event, self.pseudonymizer),
            }
            for event in events
        ]
        if not actions:
            return 0
        indexed, _ = await async_bulk(self.client, actions, raise_on_error=True)
        return indexed

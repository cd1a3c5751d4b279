"""Search filters and the Elasticsearch query they make (pure).

A patient is never searched by raw id: the caller passes the pseudonyms (one per key in the key
file, so history recorded under a previous key is found too), and only those reach the cluster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Filters:
    patients: tuple[str, ...] = ()  # pseudonyms
    actor: str | None = None
    practice: str | None = None
    session: str | None = None
    ticket: str | None = None
    action: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def described(self) -> dict[str, Any]:
        """The filters as recorded with the search (pseudonyms only, empty ones left out)."""
        out = {k: v for k, v in asdict(self).items() if v not in (None, (), {}) and k != "extra"}
        for key in ("start", "end"):
            if key in out:
                out[key] = out[key].isoformat()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def history_query(filters: Filters) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []

    def term(field_name: str, value: str | None) -> None:
        if value is not None:
            clauses.append({"term": {field_name: value}})

    def terms(field_name: str, values: tuple[str, ...]) -> None:
        if values:
            clauses.append({"terms": {field_name: list(values)}})

    terms("health.patient.pseudonym", filters.patients)
    term("user.id", filters.actor)
    term("health.practice.id", filters.practice)
    term("health.session.id", filters.session)
    term("health.ticket.id", filters.ticket)
    terms("event.action", filters.action)
    terms("health.data_category", filters.category)
    terms("event.provider", filters.source)
    for field_name, values in filters.extra.items():
        clauses.append({"terms": {field_name: list(values)}})
    window: dict[str, str] = {}
    if filters.start is not None:
        window["gte"] = filters.start.isoformat()
    if filters.end is not None:
        window["lte"] = filters.end.isoformat()
    if window:
        clauses.append({"range": {"@timestamp": window}})
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}

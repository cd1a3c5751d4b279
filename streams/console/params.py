"""What a console request asks for, read and checked: a bad value answers 400 naming the
parameter and what it must be, before any work is done."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from streams.audit.search import BadCursorError, decode_cursor
from streams.console import triage

MAX_ROWS = 10_000  # per page
PAGE_SIZE = 1_000


async def json_object(request: web.Request, shape: str) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise error(web.HTTPBadRequest, f"the body must be a JSON object: {shape}")
    return body


def moment(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise error(web.HTTPBadRequest, f"{name}: not an ISO date") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def paging(request: web.Request) -> tuple[int, str | None]:
    try:
        size = int(request.query.get("size", PAGE_SIZE))
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_ROWS:
        raise error(web.HTTPBadRequest, f"size: a number from 1 to {MAX_ROWS}")
    after = request.query.get("after") or None
    if after is not None:
        try:
            decode_cursor(after)
        except BadCursorError as exc:
            raise error(web.HTTPBadRequest, str(exc)) from None
    return size, after


def alerts_query(request: web.Request) -> dict[str, Any]:
    query = request.query
    wanted = query.get("status", "open")
    known = [status.value for status in triage.Status]
    if wanted not in (*known, "all"):
        raise error(web.HTTPBadRequest, f"status: one of {', '.join(known)} or all")
    clauses: list[dict[str, Any]] = []
    if wanted == "open":
        untriaged = {"bool": {"must_not": {"exists": {"field": "triage.status"}}}}
        clauses.append({"bool": {"should": [untriaged, {"term": {"triage.status": "open"}}]}})
    elif wanted != "all":
        clauses.append({"term": {"triage.status": wanted}})
    for name, field_name in (
        ("rule", "rule_id"),
        ("severity", "severity"),
        ("actor", "actor_id"),
        ("practice", "practice_id"),
    ):
        if query.get(name):
            clauses.append({"term": {field_name: query[name]}})
    window = {}
    for name, bound in (("from", "gte"), ("to", "lte")):
        if query.get(name):
            try:
                window[bound] = datetime.fromisoformat(query[name]).isoformat()
            except ValueError:
                raise error(web.HTTPBadRequest, f"{name}: not an ISO date") from None
    if window:
        clauses.append({"range": {"timestamp": window}})
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}


def error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json")

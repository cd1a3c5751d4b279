"""API users: a name, a role and a token that is shown once and stored only as its SHA-256.

Tokens are 32 random bytes, so a plain hash is enough (no password to stretch): whoever reads
the index learns nobody's token. Each token expires (``GUETTEUR_TOKEN_DAYS``, 90 by default) and
can be revoked; a token is named in listings by the first 12 hex digits of its hash, which
identify it without letting anyone use it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from streams.settings import Settings

TOKEN_ID_LENGTH = 12


class Role(StrEnum):
    AUDITOR = "auditor"  # searches and reports
    ANALYST = "analyst"  # alerts and triage
    ADMIN = "admin"  # everything
    PRODUCER = "producer"  # sends audit records (the FHIR endpoint); reads nothing


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    def may(self, *roles: Role) -> bool:
        return self.role is Role.ADMIN or self.role in roles


@dataclass(frozen=True)
class Refusal:
    """Why a presented token was not accepted (for the log line, never for the caller)."""

    reason: str  # "unknown", "expired" or "revoked"
    name: str | None = None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    client: Elasticsearch,
    settings: Settings,
    name: str,
    role: Role,
    days: int | None = None,
    now: datetime | None = None,
) -> str:
    """A new token for ``name``, valid ``days`` (default ``GUETTEUR_TOKEN_DAYS``); only its
    hash is kept."""
    token = "gt_" + secrets.token_urlsafe(32)
    created = now or datetime.now(UTC)
    expires = created + timedelta(days=days or settings.token_days)
    client.index(
        index=settings.tokens_index,
        id=digest(token),
        document={
            "name": name,
            "role": role.value,
            "token_sha256": digest(token),
            "created": created.isoformat(),
            "expires": expires.isoformat(),
        },
        refresh="wait_for",
    )
    return token


def lookup(
    client: Elasticsearch, settings: Settings, token: str, now: datetime | None = None
) -> User | Refusal:
    try:
        found = client.get(index=settings.tokens_index, id=digest(token))
    except NotFoundError:
        return Refusal("unknown")
    source = found["_source"]
    if source.get("revoked"):
        return Refusal("revoked", source["name"])
    expires = source.get("expires")
    if expires is None or datetime.fromisoformat(expires) <= (now or datetime.now(UTC)):
        return Refusal("expired", source["name"])  # tokens without an expiry are not trusted
    return User(source["name"], Role(source["role"]))


def listing(
    client: Elasticsearch, settings: Settings, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Every token, newest first, with its status; never the token or its full hash."""
    try:
        hits = client.search(index=settings.tokens_index, size=10_000, sort=[{"created": "desc"}])[
            "hits"
        ]["hits"]
    except NotFoundError:
        return []
    moment = now or datetime.now(UTC)
    return [_row(hit["_source"], moment) for hit in hits]


def revoke(
    client: Elasticsearch, settings: Settings, token_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """Revoke the token whose id (hash prefix) is ``token_id``; LookupError if none or several."""
    if len(token_id) < 6:
        raise LookupError("give at least 6 characters of the token id (see `guetteur token list`)")
    matches = [
        hit
        for hit in client.search(
            index=settings.tokens_index,
            size=2,
            query={"prefix": {"token_sha256": token_id.lower()}},
        )["hits"]["hits"]
    ]
    if len(matches) != 1:
        found = "no token" if not matches else "several tokens"
        raise LookupError(f"{found} with id {token_id!r}; see `guetteur token list`")
    moment = now or datetime.now(UTC)
    client.update(
        index=settings.tokens_index,
        id=matches[0]["_id"],
        doc={"revoked": moment.isoformat()},
        refresh="wait_for",
    )
    return _row({**matches[0]["_source"], "revoked": moment.isoformat()}, moment)


def _row(source: dict[str, Any], now: datetime) -> dict[str, Any]:
    expires = source.get("expires")
    if source.get("revoked"):
        status = "revoked"
    elif expires is None or datetime.fromisoformat(expires) <= now:
        status = "expired"
    else:
        status = "valid"
    return {
        "id": source["token_sha256"][:TOKEN_ID_LENGTH],
        "name": source["name"],
        "role": source["role"],
        "status": status,
        "created": source.get("created"),
        "expires": expires,
        "revoked": source.get("revoked"),
    }

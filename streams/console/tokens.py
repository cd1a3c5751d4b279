"""API users: a name, a role and a token that is shown once and stored only as its SHA-256.

Tokens are 32 random bytes, so a plain hash is enough (no password to stretch): whoever reads
the index learns nobody's token.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from elasticsearch import Elasticsearch, NotFoundError

from streams.settings import Settings


class Role(StrEnum):
    AUDITOR = "auditor"  # searches and reports
    ANALYST = "analyst"  # alerts and triage
    ADMIN = "admin"  # everything


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    def may(self, *roles: Role) -> bool:
        return self.role is Role.ADMIN or self.role in roles


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(client: Elasticsearch, settings: Settings, name: str, role: Role) -> str:
    """A new token for ``name``; only its hash is kept."""
    token = "gt_" + secrets.token_urlsafe(32)
    client.index(
        index=settings.tokens_index,
        id=digest(token),
        document={
            "name": name,
            "role": role.value,
            "token_sha256": digest(token),
            "created": datetime.now(UTC).isoformat(),
        },
        refresh="wait_for",
    )
    return token


def lookup(client: Elasticsearch, settings: Settings, token: str) -> User | None:
    try:
        found = client.get(index=settings.tokens_index, id=digest(token))
    except NotFoundError:
        return None
    source = found["_source"]
    return User(source["name"], Role(source["role"]))

"""Keyed pseudonymisation of patient identifiers (HMAC-SHA256).

A plain hash of a national health number is re-identifiable by anyone who hashes the candidate
numbers (the regulator's point: pseudonymised is not anonymous). A keyed hash is not, as long as
the key stays secret and apart from the data. Every pseudonym names its key (``k1:…``) so keys
can be rotated: the current key pseudonymises new events, older keys stay in the key file so an
auditor can still find a patient's accesses recorded under them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from streams.settings import ConfigError, Settings

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: bytes

    def pseudonym(self, raw_id: str) -> str:
        digest = hmac.new(self.secret, raw_id.encode(), hashlib.sha256).hexdigest()
        return f"{self.key_id}:{digest}"


@dataclass(frozen=True)
class Pseudonymizer:
    """The current key plus the older ones (for look-ups of history recorded before a rotation)."""

    current: Key
    previous: tuple[Key, ...] = ()

    def pseudonym(self, raw_id: str) -> str:
        return self.current.pseudonym(raw_id)

    def all_pseudonyms(self, raw_id: str) -> list[str]:
        """Every pseudonym the patient may carry in the history, newest key first."""
        return [key.pseudonym(raw_id) for key in (self.current, *self.previous)]


def parse_key_file(text: str, source: str) -> list[Key]:
    """``KEY_ID=SECRET`` lines, current key first; ``#`` comments and blank lines ignored."""
    keys: list[Key] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, secret = line.partition("=")
        if not sep:
            raise ConfigError(f"{source}:{number}: expected KEY_ID=SECRET")
        keys.append(_key(key_id.strip(), secret.strip(), f"{source}:{number}"))
    if not keys:
        raise ConfigError(f"{source}: no key in the file")
    return keys


def _key(key_id: str, secret: str, where: str) -> Key:
    if not key_id or not key_id.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}: key id {key_id!r} must be letters, digits, '-' or '_'")
    if len(secret) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"{where}: the key is {len(secret)} characters; use at least {MIN_KEY_LENGTH} "
            "(e.g. `openssl rand -hex 32`)"
        )
    return Key(key_id, secret.encode())


def load_pseudonymizer(settings: Settings, demo_key_file: Path | None = None) -> Pseudonymizer:
    """The key from GUETTEUR_PSEUDONYM_KEY(_ID) or GUETTEUR_PSEUDONYM_KEY_FILE.

    Without one, only demo mode may go on: it generates a key (kept in ``demo_key_file`` so
    repeated demos agree) and says so loudly. Real data never runs under a generated key.
    """
    if settings.pseudonym_key is not None:
        key = _key(
            settings.pseudonym_key_id,
            settings.pseudonym_key.get_secret_value(),
            "GUETTEUR_PSEUDONYM_KEY",
        )
        return Pseudonymizer(key)
    if settings.pseudonym_key_file is not None:
        path = settings.pseudonym_key_file
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"GUETTEUR_PSEUDONYM_KEY_FILE: cannot read {path}: {exc}") from None
        first, *rest = parse_key_file(text, str(path))
        return Pseudonymizer(first, tuple(rest))
    if not settings.demo:
        raise ConfigError(
            "no pseudonymisation key: set GUETTEUR_PSEUDONYM_KEY (32+ characters, e.g. "
            "`openssl rand -hex 32`) or GUETTEUR_PSEUDONYM_KEY_FILE. For a demo on synthetic "
            "data only, set GUETTEUR_DEMO=1 to generate one."
        )
    return _demo_pseudonymizer(demo_key_file)


def _demo_pseudonymizer(path: Path | None) -> Pseudonymizer:
    if path is not None and path.is_file():
        first, *rest = parse_key_file(path.read_text(), str(path))
        log.warning(
            "demo mode: using the generated pseudonymisation key", extra={"key.file": str(path)}
        )
        return Pseudonymizer(first, tuple(rest))
    key = Key("demo", secrets.token_hex(32).encode())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"# generated for demo mode: synthetic data only\ndemo={key.secret.decode()}\n"
        )
        path.chmod(0o600)
    log.warning(
        "demo mode: generated a pseudonymisation key; never use demo mode on real data",
        extra={"key.file": str(path) if path else None},
    )
    return Pseudonymizer(key)

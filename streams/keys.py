"""Secret keys with ids: loading, rotation and demo generation, for every keyed hash we compute.

Two keyrings use this: the pseudonymisation key (patient ids) and the checkpoint key (signatures
of the audit trail). They are separate on purpose: whoever may look a patient up must not be able
to re-sign a doctored history, and the other way round.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from streams.settings import ConfigError

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: bytes

    def mac(self, data: bytes) -> str:
        """HMAC-SHA256 of ``data``, hex."""
        return hmac.digest(self.secret, data, hashlib.sha256).hex()  # one-shot: C speed

    @property
    def fingerprint(self) -> str:
        """Names the secret without revealing it (a MAC of a constant), so data made with one
        key can say so, and a search with another secret under the same id is caught."""
        return self.mac(b"guetteur key fingerprint")[:16]


@dataclass(frozen=True)
class KeySource:
    """Where a keyring may come from, and the variable names to quote when it is missing."""

    env: str  # e.g. GUETTEUR_PSEUDONYM_KEY; the id and file variables add _ID and _FILE
    secret: SecretStr | None
    key_id: str
    file: Path | None


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
        keys.append(make_key(key_id.strip(), secret.strip(), f"{source}:{number}"))
    if not keys:
        raise ConfigError(f"{source}: no key in the file")
    return keys


def make_key(key_id: str, secret: str, where: str) -> Key:
    if not key_id or not key_id.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}: key id {key_id!r} must be letters, digits, '-' or '_'")
    if len(secret) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"{where}: the key is {len(secret)} characters; use at least {MIN_KEY_LENGTH} "
            "(e.g. `openssl rand -hex 32`)"
        )
    return Key(key_id, secret.encode())


def load_keys(source: KeySource, *, demo: bool, demo_file: Path | None, purpose: str) -> list[Key]:
    """The keyring from ``<ENV>`` (+ ``<ENV>_ID``) or ``<ENV>_FILE``, current key first.

    Without either, only demo mode may go on: it generates a key (kept in ``demo_file`` so
    repeated demos agree) and says so loudly. Real data never runs under a generated key.
    """
    if source.secret is not None:
        return [make_key(source.key_id, source.secret.get_secret_value(), source.env)]
    if source.file is not None:
        try:
            text = source.file.read_text()
        except OSError as exc:
            raise ConfigError(f"{source.env}_FILE: cannot read {source.file}: {exc}") from None
        return parse_key_file(text, str(source.file))
    if not demo:
        raise ConfigError(
            f"no {purpose} key: set {source.env} (32+ characters, e.g. `openssl rand -hex 32`) "
            f"or {source.env}_FILE (to search existing data: the same key file as the worker)"
        )
    return [_demo_key(demo_file, purpose)]


def _demo_key(path: Path | None, purpose: str) -> Key:
    if path is not None and path.is_file():
        log.warning(f"demo mode: using the generated {purpose} key", extra={"key.file": str(path)})
        return parse_key_file(path.read_text(), str(path))[0]
    key = Key("demo", secrets.token_hex(32).encode())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"# generated for demo mode: synthetic data only\ndemo={key.secret.decode()}\n"
        )
        path.chmod(0o600)
    log.warning(
        f"demo mode: generated a {purpose} key; never use demo mode on real data",
        extra={"key.file": str(path) if path else None},
    )
    return key

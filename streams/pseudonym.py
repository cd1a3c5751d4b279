"""Keyed pseudonymisation of patient identifiers (HMAC-SHA256).

A plain hash of a national health number is re-identifiable by anyone who hashes the candidate
numbers (the regulator's point: pseudonymised is not anonymous). A keyed hash is not, as long as
the key stays secret and apart from the data. Every pseudonym names its key (``k1:…``) so keys
can be rotated: the current key pseudonymises new events, older keys stay in the key file so an
auditor can still find a patient's accesses recorded under them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from detectors.models import AccessEvent, replaced
from streams.keys import Key, KeySource, load_keys
from streams.settings import Settings

REMEMBERED_PSEUDONYMS = 65_536


@dataclass(frozen=True)
class Pseudonymizer:
    """The current key plus the older ones (for look-ups of history recorded before a rotation)."""

    current: Key
    previous: tuple[Key, ...] = ()
    # The same patients come back all day: their pseudonyms are remembered (a dict look-up
    # instead of an HMAC), a bounded number of them, so memory stays flat on any input.
    _known: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def pseudonym(self, raw_id: str) -> str:
        known = self._known.get(raw_id)
        if known is None:
            if len(self._known) >= REMEMBERED_PSEUDONYMS:
                self._known.clear()
            known = self._known[raw_id] = _pseudonym(self.current, raw_id)
        return known

    @property
    def keys(self) -> tuple[Key, ...]:
        return (self.current, *self.previous)

    def fingerprints(self) -> dict[str, str]:
        """key id -> fingerprint: what history documents record beside each pseudonym."""
        return {key.key_id: key.fingerprint for key in self.keys}

    def all_pseudonyms(self, raw_id: str) -> list[str]:
        """Every pseudonym the patient may carry in the history, newest key first."""
        return [_pseudonym(key, raw_id) for key in self.keys]


def _pseudonym(key: Key, raw_id: str) -> str:
    return f"{key.key_id}:{key.mac(raw_id.encode())}"


def load_pseudonymizer(settings: Settings, demo_key_file: Path | None = None) -> Pseudonymizer:
    """The key from GUETTEUR_PSEUDONYM_KEY(_ID) or GUETTEUR_PSEUDONYM_KEY_FILE (demo: generated)."""
    source = KeySource(
        "GUETTEUR_PSEUDONYM_KEY",
        settings.pseudonym_key,
        settings.pseudonym_key_id,
        settings.pseudonym_key_file,
    )
    first, *rest = load_keys(
        source, demo=settings.demo, demo_file=demo_key_file, purpose="pseudonymisation"
    )
    return Pseudonymizer(first, tuple(rest))


def pseudonymise(event: AccessEvent, pseudonymizer: Pseudonymizer) -> AccessEvent:
    """The event as everything downstream sees it: its patient id replaced by the pseudonym."""
    if event.patient_id is None:
        return event
    return replaced(event, patient_id=pseudonymizer.pseudonym(event.patient_id))

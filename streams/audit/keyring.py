"""Which pseudonymisation keys the history was made with, and whether ours can read it.

A pseudonym made with another secret matches nothing, so a search under the wrong key answers
"nobody accessed this patient", which is the worst answer an auditor can get. Every history
document names its key (``health.patient.key``: id and fingerprint, see ``Key.fingerprint``), so
a search by patient first asks which keys the indices hold and refuses, naming them, when none of
the configured keys is among them. Keys the data uses that the keyring lacks (a rotation whose old
key was dropped from the key file) make the answer incomplete: that is said, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

from elasticsearch import Elasticsearch, NotFoundError

from streams.pseudonym import Pseudonymizer
from streams.settings import ConfigError, Settings

KEY_ID = "health.patient.key.id"
FINGERPRINT = "health.patient.key.fingerprint"


class KeyMismatchError(ConfigError):
    """No configured key made any patient pseudonym in the history."""


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    fingerprint: str | None  # None: written without one (before fingerprints existed)
    documents: int


@dataclass(frozen=True)
class Coverage:
    """What a search by patient can see with the configured keyring."""

    usable: tuple[str, ...]  # key ids whose pseudonyms to search
    unreadable: tuple[StoredKey, ...]  # keys the data uses that the keyring cannot reproduce

    def warning(self) -> str | None:
        if not self.unreadable:
            return None
        return (
            f"{_documents(self.unreadable)} made with key(s) {_names(self.unreadable)} cannot "
            "be searched by patient: add those keys to GUETTEUR_PSEUDONYM_KEY_FILE"
        )


def stored_keys(client: Elasticsearch, settings: Settings) -> list[StoredKey]:
    """The (key id, fingerprint) pairs present in the history, with their document counts."""
    try:
        response = client.search(
            index=settings.history_index,
            size=0,
            query={"exists": {"field": "health.patient.pseudonym"}},
            aggs={
                "ids": {
                    "terms": {"field": KEY_ID, "size": 1000},
                    "aggs": {
                        "fingerprints": {"terms": {"field": FINGERPRINT, "size": 100}},
                        "unfingerprinted": {"missing": {"field": FINGERPRINT}},
                    },
                }
            },
        )
    except NotFoundError:
        return []
    found = []
    for bucket in response["aggregations"]["ids"]["buckets"]:
        for inner in bucket["fingerprints"]["buckets"]:
            found.append(StoredKey(bucket["key"], inner["key"], inner["doc_count"]))
        if bucket["unfingerprinted"]["doc_count"]:
            found.append(StoredKey(bucket["key"], None, bucket["unfingerprinted"]["doc_count"]))
    return found


def coverage(stored: list[StoredKey], pseudonymizer: Pseudonymizer) -> Coverage:
    """Pure: which configured keys can read the history; ``KeyMismatchError`` when none can.

    A history with no patient yet is readable by any key (there is nothing to miss).
    """
    ours = pseudonymizer.fingerprints()
    readable = [s for s in stored if _readable(s, ours)]
    unreadable = tuple(s for s in stored if not _readable(s, ours))
    if stored and not readable:
        raise KeyMismatchError(_mismatch(stored, ours))
    usable = tuple(dict.fromkeys(s.key_id for s in readable)) if stored else tuple(ours)
    return Coverage(usable, unreadable)


def patient_pseudonyms(
    client: Elasticsearch, settings: Settings, pseudonymizer: Pseudonymizer, raw_id: str
) -> tuple[tuple[str, ...], Coverage]:
    """The pseudonyms to search for a patient, under every key the history holds that we have."""
    covered = coverage(stored_keys(client, settings), pseudonymizer)
    pseudonyms = [
        p for p in pseudonymizer.all_pseudonyms(raw_id) if p.partition(":")[0] in covered.usable
    ]
    return tuple(pseudonyms), covered


def _readable(stored: StoredKey, ours: dict[str, str]) -> bool:
    if stored.key_id not in ours:
        return False
    return stored.fingerprint is None or stored.fingerprint == ours[stored.key_id]


def _mismatch(stored: list[StoredKey], ours: dict[str, str]) -> str:
    same_id_other_secret = sorted(
        {s.key_id for s in stored if s.key_id in ours and s.fingerprint != ours[s.key_id]}
    )
    detail = (
        f"; key id(s) {', '.join(same_id_other_secret)} are configured with another secret "
        "than the one the data was made with"
        if same_id_other_secret
        else ""
    )
    return (
        f"the configured pseudonymisation key(s) ({', '.join(sorted(ours))}) made none of the "
        f"patient pseudonyms in the history, which uses {_names(stored)}{detail}. A search by "
        "patient would wrongly find nothing: set GUETTEUR_PSEUDONYM_KEY_FILE to the worker's key "
        "file (it keeps old keys after a rotation) and try again"
    )


def _names(keys: tuple[StoredKey, ...] | list[StoredKey]) -> str:
    names = [
        f"{k.key_id} (fingerprint {k.fingerprint})" if k.fingerprint else k.key_id for k in keys
    ]
    return ", ".join(dict.fromkeys(names))


def _documents(keys: tuple[StoredKey, ...]) -> str:
    total = sum(k.documents for k in keys)
    return f"{total} access(es)"

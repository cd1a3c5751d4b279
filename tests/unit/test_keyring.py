"""Which keys can read the history (pure part of ``streams.audit.keyring``)."""

from __future__ import annotations

import pytest

from streams.audit.keyring import Coverage, KeyMismatchError, StoredKey, coverage
from streams.keys import Key, KeySource, load_keys
from streams.pseudonym import Pseudonymizer
from streams.settings import ConfigError

K1 = Key("k1", b"k1-secret-0123456789abcdef0123456789")
K2 = Key("k2", b"k2-secret-0123456789abcdef0123456789")
K1_OTHER = Key("k1", b"not-k1s-secret-0123456789abcdef01234")


def _stored(*keys: Key, legacy: str | None = None) -> list[StoredKey]:
    found = [StoredKey(k.key_id, k.fingerprint, 10) for k in keys]
    return found + ([StoredKey(legacy, None, 3)] if legacy else [])


def test_the_configured_key_reads_what_it_made() -> None:
    assert coverage(_stored(K1), Pseudonymizer(K1)) == Coverage(("k1",), ())


def test_an_empty_history_is_readable_by_any_key() -> None:
    assert coverage([], Pseudonymizer(K2, (K1,))).usable == ("k2", "k1")


@pytest.mark.parametrize(
    ("configured", "detail"),
    [
        (Pseudonymizer(K2), "uses k1 (fingerprint"),
        (Pseudonymizer(K1_OTHER), "k1 are configured with another secret"),
    ],
)
def test_a_keyring_that_made_nothing_in_the_history_is_refused(
    configured: Pseudonymizer, detail: str
) -> None:
    with pytest.raises(KeyMismatchError) as refused:
        coverage(_stored(K1), configured)
    assert detail in str(refused.value)
    assert "GUETTEUR_PSEUDONYM_KEY_FILE" in str(refused.value)
    assert K1.secret.decode() not in str(refused.value)


def test_after_a_rotation_both_keys_are_searched() -> None:
    assert coverage(_stored(K2, K1), Pseudonymizer(K2, (K1,))).usable == ("k2", "k1")


def test_a_key_dropped_from_the_keyring_makes_the_answer_incomplete_and_says_so() -> None:
    covered = coverage(_stored(K2, K1), Pseudonymizer(K2))
    assert covered.usable == ("k2",)
    assert covered.warning() is not None and "10 access(es) made with key(s) k1" in (
        covered.warning() or ""
    )


def test_documents_written_before_fingerprints_are_read_by_their_key_id() -> None:
    assert coverage(_stored(legacy="k1"), Pseudonymizer(K1)).usable == ("k1",)
    with pytest.raises(KeyMismatchError):
        coverage(_stored(legacy="k1"), Pseudonymizer(K2))


def test_a_missing_key_error_does_not_suggest_demo_mode() -> None:
    source = KeySource("GUETTEUR_PSEUDONYM_KEY", None, "k1", None)
    with pytest.raises(ConfigError) as missing:
        load_keys(source, demo=False, demo_file=None, purpose="pseudonymisation")
    assert "DEMO" not in str(missing.value).upper()

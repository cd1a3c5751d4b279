from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from streams.keys import Key, parse_key_file
from streams.pseudonym import Pseudonymizer, load_pseudonymizer
from streams.settings import ConfigError, Settings

SECRET = "0123456789abcdef0123456789abcdef"


def test_pseudonym_is_a_keyed_hmac_naming_its_key() -> None:
    expected = hmac.new(SECRET.encode(), b"P-10045", hashlib.sha256).hexdigest()
    assert Pseudonymizer(Key("k1", SECRET.encode())).pseudonym("P-10045") == f"k1:{expected}"


def test_same_id_other_key_gives_another_pseudonym() -> None:
    one = Pseudonymizer(Key("k1", SECRET.encode())).pseudonym("P-10045")
    two = Pseudonymizer(Key("k2", (SECRET + "x").encode())).pseudonym("P-10045")
    assert one.split(":")[1] != two.split(":")[1]
    assert hashlib.sha256(b"P-10045").hexdigest() not in {one, two}  # not a plain hash


def test_worker_refuses_to_start_without_a_key() -> None:
    with pytest.raises(ConfigError, match="GUETTEUR_PSEUDONYM_KEY"):
        load_pseudonymizer(Settings(pseudonym_key=None, pseudonym_key_file=None, demo=False))


def test_short_key_is_refused_with_the_variable_name() -> None:
    with pytest.raises(ConfigError, match="GUETTEUR_PSEUDONYM_KEY: the key is 5 characters"):
        load_pseudonymizer(Settings(pseudonym_key=SecretStr("short")))


def test_demo_mode_generates_and_keeps_a_key(tmp_path: Path) -> None:
    key_file = tmp_path / "demo.key"
    first = load_pseudonymizer(Settings(demo=True), key_file)
    again = load_pseudonymizer(Settings(demo=True), key_file)
    assert first.pseudonym("P-1") == again.pseudonym("P-1")
    assert first.current.key_id == "demo"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_key_file_rotation_keeps_older_keys_for_lookups(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated 2026-11\nk2={SECRET}zz\nk1={SECRET}\n")
    pseudonymizer = load_pseudonymizer(Settings(pseudonym_key_file=key_file))
    assert pseudonymizer.pseudonym("P-1").startswith("k2:")
    assert [p.split(":")[0] for p in pseudonymizer.all_pseudonyms("P-1")] == ["k2", "k1"]


def test_bad_key_file_line_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"keys:2: expected KEY_ID=SECRET"):
        parse_key_file(f"k1={SECRET}\nnot a key line\n", "keys")


def test_a_pseudonym_look_up_that_cannot_be_recorded_prints_nothing() -> None:
    """Fail-closed: the look-up is an access; with Kafka unreachable it is refused. (Recorded
    look-ups: tests/integration/test_audit_search.py.)"""
    env = {
        "GUETTEUR_PSEUDONYM_KEY": SECRET,
        "GUETTEUR_PSEUDONYM_KEY_ID": "k9",
        "GUETTEUR_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "GUETTEUR_AUDIT_RECORD_SECONDS": "1",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "pseudonym", "-", "--json"],
        input="P-10045\n",
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)  # --json: the error too, as one JSON object
    assert "cannot be recorded" in error["error"] and "Kafka" in error["error"]
    assert error["exit"] == 1
    assert Pseudonymizer(Key("k9", SECRET.encode())).pseudonym("P-10045") not in result.stdout
    assert "P-10045" not in result.stdout + result.stderr


def test_remembered_pseudonyms_are_the_same_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pseudonyms are remembered (an HMAC per event cost more than the detectors' routing),
    never more than REMEMBERED_PSEUDONYMS of them, and a remembered one is the computed one."""
    import streams.pseudonym as module

    monkeypatch.setattr(module, "REMEMBERED_PSEUDONYMS", 10)
    pseudonymizer = Pseudonymizer(Key("k1", SECRET.encode()))
    fresh = Pseudonymizer(Key("k1", SECRET.encode()))
    for round_ in range(3):
        for number in range(25):
            raw = f"P-{number}"
            assert pseudonymizer.pseudonym(raw) == fresh.all_pseudonyms(raw)[0], round_
            assert len(pseudonymizer._known) <= 10

"""The signing keyring: signatures, key ids, rotation, and where a process finds its keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from eddy.core.settings import Settings
from eddy.core.signing import (
    DEFAULT_KEYRING,
    Keyring,
    KeyringError,
    KeyringSource,
    SignatureError,
    keyring_source,
    write_keyring,
)

from tests.keys import FORGER_KEYS, TEST_KEYS


def test_a_signature_names_its_key_and_verifies_only_the_same_bytes_under_the_same_secret() -> None:
    signature = TEST_KEYS.sign(b"model")
    assert signature.startswith("v1:test-key:") and TEST_KEYS.verify(b"model", signature) == "test-key"
    with pytest.raises(SignatureError) as info:
        TEST_KEYS.verify(b"model", FORGER_KEYS.sign(b"model"))  # same key id, another secret
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("signature", "reason"),
    [("", "unsigned"), ("v1:test-key", "malformed"), ("v2:test-key:00", "malformed"), ("v1:other:00", "unknown_key")],
)
def test_every_bad_signature_has_a_one_word_reason(signature: str, reason: str) -> None:
    with pytest.raises(SignatureError) as info:
        TEST_KEYS.verify(b"model", signature)
    assert info.value.reason == reason


def test_rotation_signs_with_the_new_key_and_still_verifies_the_old_until_it_is_removed() -> None:
    old_signature = TEST_KEYS.sign(b"m")
    rotated = TEST_KEYS.rotated("k2")
    assert rotated.sign(b"m").startswith("v1:k2:")
    assert rotated.verify(b"m", old_signature) == "test-key"
    removed = rotated.without("test-key")
    with pytest.raises(SignatureError, match="does not hold"):
        removed.verify(b"m", old_signature)
    with pytest.raises(KeyringError, match="active key"):
        rotated.without("k2")


def test_a_keyring_file_round_trips_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    keyring = Keyring.generate("k1")
    assert write_keyring(path, keyring, exclusive=True)
    assert not write_keyring(path, Keyring.generate("k9"), exclusive=True)  # the first one stays
    assert Keyring.from_json(path.read_text()) == keyring
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "is not a keyring"),
        ('{"active": "k1", "keys": {}}', "not in the keyring"),
        ('{"active": "k1", "keys": {"k1": {"secret": "c2hvcnQ="}}}', "too short"),
        ('{"active": "k1", "keys": {"k1": {"secret": "!!"}}}', "is not a keyring"),
    ],
)
def test_a_bad_keyring_file_is_a_clear_error(text: str, says: str) -> None:
    with pytest.raises(KeyringError, match=says):
        Keyring.from_json(text, "keys.json")


def test_a_running_process_picks_up_a_rotation_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keyring(path, TEST_KEYS)
    source = KeyringSource(path)
    source.recheck_s = 0.0
    before = source.sign(b"m")
    write_keyring(path, TEST_KEYS.rotated("k2"))
    os.utime(path, ns=(1, 1))  # a rewrite within the same clock tick still counts as a change
    assert source.sign(b"m").startswith("v1:k2:") and source.verify(b"m", before) == "test-key"


def test_the_state_dirs_keyring_is_made_once_and_shared(tmp_path: Path) -> None:
    first = keyring_source("", "", tmp_path)
    second = keyring_source("", "", tmp_path)
    assert (tmp_path / DEFAULT_KEYRING).exists()
    assert second.verify(b"m", first.sign(b"m")) == first.current().active


def test_a_named_keyring_file_must_exist_and_inline_keys_win(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="eddy keys init"):
        keyring_source("", str(tmp_path / "missing.json"), tmp_path)
    settings = Settings(signing_keys="inline:" + "A" * 44, state_dir=tmp_path)
    assert settings.keyring().current().active == "inline"
    assert "A" * 44 not in repr(settings) and settings.shown()["EDDY_SIGNING_KEYS"] != "inline:" + "A" * 44
    assert not (tmp_path / DEFAULT_KEYRING).exists()


def test_a_rotation_keeps_the_files_access_and_a_process_keeps_its_keys_while_the_file_is_unreadable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.json"
    write_keyring(path, TEST_KEYS)
    path.chmod(0o640)  # readable by the containers' group, as the compose docs set it up
    write_keyring(path, TEST_KEYS.rotated("k2"))
    assert path.stat().st_mode & 0o777 == 0o640
    source = KeyringSource(path)
    source.recheck_s = 0.0
    path.write_text("{ half written")
    assert source.current().active == "k2"  # the keys read before, not a crash

"""Signed pickles: a forged model never runs, whatever its checksum says (issue 21's acceptance, in process).

Each forged payload here creates a marker file when unpickled; each test's proof is that the marker never exists.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from eddy.ml import artifacts
from eddy.ml.artifacts import ArtifactRefused, file_bytes, read_signed_file, signed_pickle, write_signed_file
from eddy.ml.models import ModelState, SnapshotError, load_snapshot_estimator

from tests.keys import FORGER_KEYS, TEST_KEYS, forged_pickle
from tests.records import demo_contract


def refusals(kind: str, reason: str) -> float:
    return artifacts.REFUSALS.labels(kind, reason)._value.get()


def forged_snapshot(marker: Path, signature: str | None) -> dict:
    """A snapshot record as an attacker with write access to S.models would make it: the checksum is right."""
    record = ModelState.fresh("demo", demo_contract().champion).to_snapshot_record(TEST_KEYS)
    payload = forged_pickle(marker)
    return {**record, "artifact": payload, "sha256": hashlib.sha256(payload).hexdigest(), "signature": signature}


@pytest.mark.parametrize(
    ("forger", "reason"),
    [
        (lambda payload: "", "unsigned"),
        (FORGER_KEYS.sign, "bad_signature"),  # the right key id, a secret eddy does not hold
        (lambda payload: "v1:someone:" + hashlib.sha256(payload).hexdigest(), "unknown_key"),
        (lambda payload: hashlib.sha256(payload).hexdigest(), "malformed"),
    ],
)
def test_a_forged_snapshot_with_a_correct_checksum_is_refused_before_unpickling(
    tmp_path: Path, forger, reason: str
) -> None:
    marker = tmp_path / "pwned"
    record = forged_snapshot(marker, None)
    record["signature"] = forger(record["artifact"])
    before = refusals("snapshot", reason)
    with pytest.raises(SnapshotError) as info:
        load_snapshot_estimator(record, TEST_KEYS)
    assert info.value.reason == reason and "refused before unpickling" in str(info.value)
    assert not marker.exists()
    assert refusals("snapshot", reason) == before + 1


def test_a_snapshot_signed_with_an_old_key_loads_after_a_rotation() -> None:
    record = ModelState.fresh("demo", demo_contract().champion).to_snapshot_record(TEST_KEYS)
    assert load_snapshot_estimator(record, TEST_KEYS.rotated("k2")) is not None


def test_a_signed_file_round_trips_and_a_forged_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    write_signed_file(path, {"w": [1.0, 2.0]}, TEST_KEYS)
    assert read_signed_file(path, TEST_KEYS, "checkpoint") == {"w": [1.0, 2.0]}
    marker = tmp_path / "pwned"
    payload = forged_pickle(marker)
    for content, reason in [
        (payload, "unsigned"),  # a bare pickle, as files were before signing
        (file_bytes(payload, FORGER_KEYS.sign(payload)), "bad_signature"),
        (file_bytes(payload, TEST_KEYS.sign(b"another payload")), "bad_signature"),
    ]:
        path.write_bytes(content)
        with pytest.raises(ArtifactRefused) as info:
            read_signed_file(path, TEST_KEYS, "checkpoint")
        assert info.value.reason == reason and str(path) in str(info.value)
    assert not marker.exists()


def test_signing_signs_the_exact_pickle_bytes() -> None:
    data, signature = signed_pickle({"a": 1}, TEST_KEYS)
    assert TEST_KEYS.verify(data, signature) == "test-key"

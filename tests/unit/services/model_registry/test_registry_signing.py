"""The registry unpickles nothing unsigned: candidates and its own artifact files are verified first."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from eddy.ml.artifacts import file_bytes
from eddy.ml.models import load_snapshot_estimator
from eddy.ml.roles import VersionKey
from eddy.services.model_registry.artifacts import ArtifactError
from eddy.services.model_registry.handlers import CandidateError, Registry

from tests.keys import FORGER_KEYS, TEST_KEYS, forged_pickle
from tests.unit.services.model_registry.test_registry_store import candidate, open_registry


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    return open_registry(tmp_path)


@pytest.mark.parametrize(("forge", "reason"), [(lambda p: "", "unsigned"), (FORGER_KEYS.sign, "bad_signature")])
def test_a_forged_candidate_with_a_correct_checksum_is_refused(
    registry: Registry, tmp_path: Path, forge: Callable[[bytes], str], reason: str
) -> None:
    marker = tmp_path / "pwned"
    payload = forged_pickle(marker)
    forged = candidate(
        registry.contract("demo"),
        1,
        artifact=payload,
        sha256=hashlib.sha256(payload).hexdigest(),
        signature=forge(payload),
    )
    with pytest.raises(CandidateError) as info:
        registry.register_candidate(forged)
    assert info.value.reason == reason
    assert not marker.exists()
    assert len(registry.store.versions("demo")) == 1  # nothing registered, nothing stored


def test_a_forged_artifact_file_is_never_unpickled_nor_published(registry: Registry, tmp_path: Path) -> None:
    (row,) = registry.store.versions("demo")
    marker = tmp_path / "pwned"
    payload = forged_pickle(marker)
    # Someone with write access to the store replaces the file; without the key they cannot sign it.
    registry.artifacts.path(row.sha256).write_bytes(file_bytes(payload, FORGER_KEYS.sign(payload)))
    with pytest.raises(ArtifactError, match="refused"):
        registry.snapshot_record(row)
    registry.artifacts.path(row.sha256).write_bytes(payload)  # a bare pickle: unsigned
    with pytest.raises(ArtifactError, match="no signature line"):
        registry.snapshot_record(row)
    assert not registry.artifacts.verify(row.sha256)
    assert not marker.exists()


def test_the_registry_publishes_its_artifacts_signed_with_the_key_that_signs_now(tmp_path: Path) -> None:
    registry = open_registry(tmp_path)
    (row,) = registry.store.versions("demo")
    rotated = TEST_KEYS.rotated("k2")
    registry.artifacts.signer = rotated  # what a reloaded keyring file gives a running registry
    snapshot = registry.snapshot_record(row)  # the file, signed with the old key, still verifies
    assert snapshot["signature"].startswith("v1:k2:")
    assert load_snapshot_estimator(snapshot, rotated.without("test-key")) is not None
    assert registry.register_candidate(candidate(registry.contract("demo"), 1)) is not None  # old-key candidate
    assert registry.store.versions("demo")[-1].key == VersionKey("default", 2)

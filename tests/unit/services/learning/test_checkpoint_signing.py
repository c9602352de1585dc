"""A learner checkpoint is a signed pickle: a forged one is never loaded, and the learner does not start on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from eddy.ml.artifacts import file_bytes
from eddy.ml.models import ModelState
from eddy.services.learning import checkpoint
from eddy.services.learning.handlers import LearnerState

from tests.keys import FORGER_KEYS, TEST_KEYS, forged_pickle
from tests.records import demo_contract


def saved(tmp_path: Path) -> Path:
    path = checkpoint.checkpoint_path(tmp_path, "demo", "default")
    state = LearnerState(ModelState.fresh("demo", demo_contract().champion))
    checkpoint.save(path, checkpoint.Checkpoint("cluster-a", state), TEST_KEYS)
    return path


@pytest.mark.parametrize("signer", [None, FORGER_KEYS])
def test_a_forged_checkpoint_is_refused_before_unpickling(tmp_path: Path, signer) -> None:
    path = saved(tmp_path)
    marker = tmp_path / "pwned"
    payload = forged_pickle(marker)
    path.write_bytes(payload if signer is None else file_bytes(payload, signer.sign(payload)))
    with pytest.raises(checkpoint.CheckpointRefused, match="will not start on it"):
        checkpoint.load(path, TEST_KEYS)
    assert not marker.exists()


def test_a_checkpoint_written_before_a_rotation_loads_after_it_until_its_key_is_removed(tmp_path: Path) -> None:
    path = saved(tmp_path)
    rotated = TEST_KEYS.rotated("k2")
    loaded = checkpoint.load(path, rotated)
    assert loaded is not None and loaded.cluster_id == "cluster-a"
    with pytest.raises(checkpoint.CheckpointRefused, match="does not hold"):
        checkpoint.load(path, rotated.without("test-key"))
    checkpoint.save(path, loaded, rotated)  # the next checkpoint is signed with the new key
    assert checkpoint.load(path, rotated.without("test-key")) is not None

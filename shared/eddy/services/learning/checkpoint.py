"""Learner checkpoints: model, join state and input offsets, written together, atomically.

Because the model and the offsets it has consumed up to are saved in one file,
a learner killed at any moment restarts from the checkpoint and re-reads exactly
the input after it: no label is learned twice and none is skipped, with no need
for broker transactions.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from eddy.services.learning.handlers import LearnerState

# The checkpoint of a version that was archived keeps this suffix: a rollback to the version resumes from it.
ARCHIVED_SUFFIX = ".archived"


@dataclass
class Checkpoint:
    cluster_id: str
    state: LearnerState


def checkpoint_path(state_dir: Path, stream: str, model: str, version: int = 1) -> Path:
    """Version 1 keeps the name it had before versions existed, so older checkpoints are still found."""
    name = model if version == 1 else f"{model}@{version}"
    return state_dir / "learning" / stream / f"{name}.ckpt"


def saved_versions(state_dir: Path, stream: str, model: str) -> list[int]:
    """The versions of ``model`` with a checkpoint on disk."""
    folder = state_dir / "learning" / stream
    versions = [1] if (folder / f"{model}.ckpt").exists() else []
    for path in folder.glob(f"{model}@*.ckpt"):
        suffix = path.stem.rpartition("@")[2]
        if suffix.isdigit():
            versions.append(int(suffix))
    return sorted(versions)


def save(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(checkpoint, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    # The rename itself must reach the disk before offsets are committed anywhere else.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: Path) -> Checkpoint | None:
    if not path.exists():
        return None
    with open(path, "rb") as fh:
        checkpoint = pickle.load(fh)
    if not isinstance(checkpoint, Checkpoint):
        raise ValueError(f"{path} is not a learner checkpoint")
    return checkpoint

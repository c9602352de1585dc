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

from services.learning.handlers import LearnerState


@dataclass
class Checkpoint:
    cluster_id: str
    state: LearnerState


def checkpoint_path(state_dir: Path, stream: str, model: str) -> Path:
    return state_dir / "learning" / stream / f"{model}.ckpt"


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

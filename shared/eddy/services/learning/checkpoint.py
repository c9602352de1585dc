"""Learner checkpoints: model, join state and input offsets, written together, atomically.

Because the model and the offsets it has consumed up to are saved in one file,
a learner killed at any moment restarts from the checkpoint and re-reads exactly
the input after it: no label is learned twice and none is skipped, with no need
for broker transactions.

A checkpoint is a signed pickle (``eddy.ml.artifacts``): one whose signature does not verify is never
unpickled, and the learner does not start on it (``CheckpointRefused``): learning on from anything else
would learn some labels twice or skip them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from eddy.ml.artifacts import ArtifactRefused, Signer, read_signed_file, write_signed_file
from eddy.services.learning.handlers import LearnerState

# The checkpoint of a version that was archived keeps this suffix: a rollback to the version resumes from it.
ARCHIVED_SUFFIX = ".archived"


@dataclass
class Checkpoint:
    cluster_id: str
    state: LearnerState


def checkpoint_path(state_dir: Path, stream: str, model: str, version: int = 1, shard: int | None = None) -> Path:
    """Version 1 keeps the name it had before versions existed, so older checkpoints are still found.

    Each shard of a sharded model (``shard``; None for an exact model) has a folder of its own.

    >>> checkpoint_path(Path("/s"), "demo", "m", 2), checkpoint_path(Path("/s"), "demo", "m", 1, shard=3)
    (PosixPath('/s/learning/demo/m@2.ckpt'), PosixPath('/s/learning/demo/shard-3/m.ckpt'))
    """
    name = model if version == 1 else f"{model}@{version}"
    return _folder(state_dir, stream, shard) / f"{name}.ckpt"


def _folder(state_dir: Path, stream: str, shard: int | None) -> Path:
    folder = state_dir / "learning" / stream
    return folder if shard is None else folder / f"shard-{shard}"


def saved_versions(state_dir: Path, stream: str, model: str, shard: int | None = None) -> list[int]:
    """The versions of ``model`` (of its ``shard``) with a checkpoint on disk."""
    folder = _folder(state_dir, stream, shard)
    versions = [1] if (folder / f"{model}.ckpt").exists() else []
    for path in folder.glob(f"{model}@*.ckpt"):
        suffix = path.stem.rpartition("@")[2]
        if suffix.isdigit():
            versions.append(int(suffix))
    return sorted(versions)


class CheckpointRefused(RuntimeError):
    """A checkpoint whose signature does not verify: the learner stops rather than learn from a guess."""


def save(path: Path, checkpoint: Checkpoint, signer: Signer) -> None:
    """Write ``checkpoint`` signed, atomically; the rename reaches the disk before offsets are committed elsewhere."""
    write_signed_file(path, checkpoint, signer)


def load(path: Path, signer: Signer) -> Checkpoint | None:
    """The checkpoint at ``path``, None if there is none.

    Raises
    ------
    CheckpointRefused
        If its signature does not verify (it is not unpickled): restore the key that signed it, or move the
        file away to start that version over.
    """
    if not path.exists():
        return None
    try:
        checkpoint = read_signed_file(path, signer, "checkpoint")
    except ArtifactRefused as exc:
        raise CheckpointRefused(
            f"{exc}: the learner will not start on it. Restore the signing key that wrote it, or move the file "
            "away to start this version over from the registry's snapshot."
        ) from exc
    if not isinstance(checkpoint, Checkpoint):
        raise ValueError(f"{path} is not a learner checkpoint")
    return checkpoint

"""A content-addressed store of model artifacts: ``artifacts/<sha[:2]>/<sha>``.

An artifact is written to a temp file in its final directory, fsynced, renamed
and the directory fsynced, so a crash leaves either the whole file or a temp
file that :meth:`ArtifactStore.clean` removes on the next start. The registry
writes the artifact before the database row that names it, so a row never
points at a missing file.

A file is a signed pickle (``eddy.ml.artifacts``: a signature line, then the pickle's bytes, whose SHA-256
names it). Every load checks the signature, then the SHA-256: a file someone else put in the store, with
the right name, is refused and never unpickled, nor published on to inference.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from eddy.core.files import write_atomically
from eddy.ml.artifacts import ArtifactRefused, Signer, file_bytes, split_file, verify

TEMP_PREFIX = ".tmp-"


class ArtifactError(RuntimeError):
    """An artifact that is missing, unsigned or badly signed, or whose bytes no longer match its SHA-256."""


class ArtifactStore:
    """Signed artifacts by the SHA-256 of their pickle under ``root``."""

    def __init__(self, root: Path, signer: Signer) -> None:
        self.root = root
        self.signer = signer
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ArtifactError(f"{sha256!r} is not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> tuple[str, int]:
        """Store ``data`` signed (once: the same bytes are the same file); returns its SHA-256 and size.

        ``data`` must be a pickle whose signature was verified, or that this process made.
        """
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha)
        if final.exists() and self.verify(sha):
            return sha, len(data)
        final.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(final, file_bytes(data, self.signer.sign(data)), TEMP_PREFIX)
        return sha, len(data)

    def get(self, sha256: str) -> bytes:
        """The artifact's pickle bytes, after checking its signature, then its SHA-256.

        Raises
        ------
        ArtifactError
            If it is missing, its signature does not verify, or its content does not hash to ``sha256``.
        """
        path = self.path(sha256)
        try:
            content = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactError(f"artifact {sha256} is missing from {self.root}") from exc
        try:
            data, signature = split_file(content, "registry artifact", str(path))
            verify(data, signature, self.signer, "registry artifact")
        except ArtifactRefused as exc:
            raise ArtifactError(f"artifact {sha256} refused ({path}): {exc}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactError(f"artifact {sha256} is corrupt: its content hashes to {actual} ({path})")
        return data

    def verify(self, sha256: str) -> bool:
        try:
            self.get(sha256)
        except ArtifactError:
            return False
        return True

    def clean(self) -> int:
        """Remove temp files left by a crash mid-write; returns how many."""
        removed = 0
        for tmp in self.root.glob(f"*/{TEMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*/*") if not p.name.startswith(TEMP_PREFIX))

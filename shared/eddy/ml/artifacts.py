"""Signed pickles: the only way eddy turns a model or checkpoint into bytes, and the only way back.

``pickle.loads`` runs whatever the bytes say, so bytes are unpickled only after their HMAC signature
(``eddy.core.signing``) verifies. A refusal is counted in ``eddy_artifact_refusals_total`` by kind and
reason, and raised as ``ArtifactRefused``; callers log it and dead-letter the record it came in.

A file holds its signature in a first line, then the pickle::

    EDDY-SIGNED v1:KEY_ID:HEX
    <pickle bytes>

Examples
--------
>>> from eddy.core.signing import Keyring
>>> ring = Keyring({"k1": b"0" * 32}, "k1")
>>> data, signature = signed_pickle({"w": 1.5}, ring)
>>> verified_unpickle(data, signature, ring, "snapshot")
{'w': 1.5}
>>> verified_unpickle(data, Keyring({"k1": b"1" * 32}, "k1").sign(data), ring, "snapshot")
Traceback (most recent call last):
...
eddy.ml.artifacts.ArtifactRefused: snapshot refused before unpickling: signature by key k1 does not match the content
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Counter

from eddy.core.signing import SignatureError

FILE_MAGIC = b"EDDY-SIGNED "
# A signature line is short; a longer first line is not ours.
MAX_SIGNATURE_LINE = 512

REFUSALS = Counter(
    "eddy_artifact_refusals_total",
    "Pickled artifacts refused before unpickling because their signature did not verify, by kind and reason.",
    ["kind", "reason"],
)


class Signer(Protocol):
    def sign(self, data: bytes) -> str: ...

    def verify(self, data: bytes, signature: str) -> str: ...


class ArtifactRefused(ValueError):
    """An artifact whose signature did not verify: it was never unpickled. ``reason`` as in ``SignatureError``."""

    def __init__(self, kind: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason


def signed_pickle(obj: Any, signer: Signer) -> tuple[bytes, str]:
    """``obj`` pickled, and the signature of those bytes."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return data, signer.sign(data)


def verify(data: bytes, signature: str, signer: Signer, kind: str) -> str:
    """The key id that signed ``data``; raises ``ArtifactRefused`` (and counts it) otherwise."""
    try:
        return signer.verify(data, signature)
    except SignatureError as exc:
        REFUSALS.labels(kind, exc.reason).inc()
        raise ArtifactRefused(kind, exc.reason, f"{kind} refused before unpickling: {exc}") from exc


def verified_unpickle(data: bytes, signature: str, signer: Signer, kind: str) -> Any:
    """Unpickle ``data`` once ``signature`` verifies it.

    Raises
    ------
    ArtifactRefused
        If the signature is missing or does not verify: the bytes are not unpickled.
    """
    verify(data, signature, signer, kind)
    return pickle.loads(data)


def file_bytes(data: bytes, signature: str) -> bytes:
    """A signed file's content: the signature line, then ``data``.

    >>> file_bytes(b"DATA", "v1:k1:ab")
    b'EDDY-SIGNED v1:k1:ab\\nDATA'
    """
    return FILE_MAGIC + signature.encode("ascii") + b"\n" + data


def split_file(content: bytes, kind: str, where: str) -> tuple[bytes, str]:
    """A signed file's data and signature; ``ArtifactRefused`` (unsigned) for a file without the signature line.

    >>> split_file(b"EDDY-SIGNED v1:k1:ab\\nDATA", "checkpoint", "f")
    (b'DATA', 'v1:k1:ab')
    """
    line_end = content.find(b"\n", 0, MAX_SIGNATURE_LINE)
    if not content.startswith(FILE_MAGIC) or line_end < 0:
        REFUSALS.labels(kind, "unsigned").inc()
        raise ArtifactRefused(kind, "unsigned", f"{kind} {where} refused before unpickling: it has no signature line")
    return content[line_end + 1 :], content[len(FILE_MAGIC) : line_end].decode("ascii", "replace")


def write_signed_file(path: Path, obj: Any, signer: Signer) -> None:
    """Pickle ``obj`` into ``path``, signed, atomically and durably (the rename too)."""
    data, signature = signed_pickle(obj, signer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(file_bytes(data, signature))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_signed_file(path: Path, signer: Signer, kind: str) -> Any:
    """The object pickled in a signed file, unpickled only once its signature verifies."""
    data, signature = split_file(path.read_bytes(), kind, str(path))
    try:
        verify(data, signature, signer, kind)
    except ArtifactRefused as exc:
        raise ArtifactRefused(kind, exc.reason, f"{exc} ({path})") from exc
    return pickle.loads(data)

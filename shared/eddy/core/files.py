"""Durable, atomic file writes: a reader (or a restart after a crash) sees the old file or the new one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, temp_prefix: str | None = None) -> None:
    """Write ``data`` to ``path`` through a synced temporary file renamed over it, then sync the folder.

    The temporary file sits next to ``path``, named ``temp_prefix`` + random (default ``.NAME.``,
    ending ``.tmp``), and is removed if the write fails; a crash can leave one behind, which is why
    a store may choose the prefix it later sweeps for.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomically(folder / "a.txt", b"one"); write_atomically(folder / "a.txt", b"two")
    >>> (folder / "a.txt").read_bytes(), sorted(p.name for p in folder.iterdir())
    (b'two', ['a.txt'])
    """
    prefix, suffix = (temp_prefix, "") if temp_prefix is not None else (f".{path.name}.", ".tmp")
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk before anything that names the file is committed.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

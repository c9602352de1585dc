"""Append-only JSON-lines journal that makes the registry durable.

Each line is one committed transaction ``{"ts": ..., "ops": [...]}``. A
transaction is written with a single ``write`` and ``fsync``'d before the HTTP
response is sent, so a line is either wholly present or it is the torn tail
left by a crash (``kill -9``, power loss) whose request never got an answer.
Recovery keeps every complete line, cuts a torn tail off the file, and refuses
to start if a line in the *middle* is unreadable, since that is real damage
rather than an interrupted append.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Final

log = logging.getLogger(__name__)

JOURNAL_NAME: Final = "journal.jsonl"
LOCK_NAME: Final = ".lock"


class JournalError(RuntimeError):
    """Raised when the journal cannot be opened, read or appended to."""


class Journal:
    """The durable log of registry operations under a data directory.

    Parameters
    ----------
    data_dir : Path
        Directory holding ``journal.jsonl`` (created if missing).
    fsync : bool
        Whether to ``fsync`` each append (tests of pure logic may turn it off).
    """

    def __init__(self, data_dir: Path, fsync: bool = True) -> None:
        self._dir = data_dir
        self._path = data_dir / JOURNAL_NAME
        self._fsync = fsync
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._size = 0

    @property
    def path(self) -> Path:
        """Location of the journal file."""
        return self._path

    def open(self) -> list[dict[str, Any]]:
        """Lock the data directory, recover the journal and return its operations.

        Returns
        -------
        list of dict
            Every operation of every complete transaction, in commit order.

        Raises
        ------
        JournalError
            If another process holds the directory, or a non-tail line is corrupt.
        """
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self._dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise JournalError(f"data directory {self._dir} is in use by another registry process") from None
        created = not self._path.exists()
        ops, good_length = self._recover()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if os.fstat(self._fd).st_size != good_length:
            log.warning("journal %s: dropping a torn last line left by an interrupted write", self._path)
            os.ftruncate(self._fd, good_length)
            os.fsync(self._fd)
        self._size = good_length
        if created:
            self._sync_dir()
        return ops

    def _recover(self) -> tuple[list[dict[str, Any]], int]:
        if not self._path.exists():
            return [], 0
        data = self._path.read_bytes()
        ops: list[dict[str, Any]] = []
        offset = 0
        line_no = 0
        while offset < len(data):
            end = data.find(b"\n", offset)
            line_no += 1
            if end == -1:
                break  # torn tail: the newline is written last, in the same write
            line = data[offset:end]
            try:
                record = json.loads(line)
                batch = record["ops"]
                if not isinstance(batch, list):
                    raise TypeError("ops is not a list")
            except (ValueError, KeyError, TypeError) as exc:
                if data[end + 1 :].strip():
                    raise JournalError(f"journal {self._path} is corrupt at line {line_no}: {exc}") from exc
                break  # unreadable final line: treat as torn
            ops.extend(batch)
            offset = end + 1
        return ops, offset

    def _sync_dir(self) -> None:
        dir_fd = os.open(self._dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def append(self, ops: list[dict[str, Any]]) -> None:
        """Durably append one transaction.

        Parameters
        ----------
        ops : list of dict
            Operations that must become visible together.

        Raises
        ------
        JournalError
            If the journal is closed or the write/fsync fails.
        """
        if self._fd is None:
            raise JournalError("journal is not open")
        line = json.dumps({"ts": round(time.time(), 3), "ops": ops}, separators=(",", ":"), ensure_ascii=False)
        payload = (line + "\n").encode()
        try:
            view = memoryview(payload)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self._fsync:
                os.fsync(self._fd)
        except OSError as exc:
            # Cut a partial line off so that later appends do not follow garbage.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                log.exception("journal %s: could not truncate a failed append", self._path)
            raise JournalError(f"could not append to journal {self._path}: {exc}") from exc
        self._size += len(payload)

    def close(self) -> None:
        """Close the journal and release the directory lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

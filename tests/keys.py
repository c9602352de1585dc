"""A signing keyring for tests that sign or verify models in process (``eddy.core.signing``)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from eddy.core.signing import Keyring

TEST_KEYS = Keyring({"test-key": b"eddy-test-signing-key-0123456789"}, "test-key")
# Another keyring with a key of the same id: what a forger without the secret would sign with.
FORGER_KEYS = Keyring({"test-key": b"not-the-key-of-eddy-0123456789ab"}, "test-key")


class WritesAFile:
    """What an attacker would put in a pickle: unpickling it writes ``path`` (here harmless, and visible)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "unpickled: the forged payload ran"))


def forged_pickle(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when loaded: the test of every refusal is that ``marker`` never exists."""
    return pickle.dumps(WritesAFile(marker))

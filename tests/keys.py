"""A signing keyring for tests that sign or verify models in process (``eddy.core.signing``)."""

from __future__ import annotations

from eddy.core.signing import Keyring

TEST_KEYS = Keyring({"test-key": b"eddy-test-signing-key-0123456789"}, "test-key")
# Another keyring with a key of the same id: what a forger without the secret would sign with.
FORGER_KEYS = Keyring({"test-key": b"not-the-key-of-eddy-0123456789ab"}, "test-key")

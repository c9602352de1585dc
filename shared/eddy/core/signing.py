"""Signing keys: HMAC-SHA256 signatures with key ids, so keys can be rotated.

Every pickled artifact eddy moves or stores (model snapshots, candidates, the registry's artifact files,
learner checkpoints) carries a signature made with a key of the keyring; nothing is unpickled before its
signature verifies (``eddy.ml.artifacts``). A SHA-256 in the same record proves nothing: whoever can write
the record can recompute it. An HMAC needs the key.

A keyring is a JSON file (a Kubernetes or compose secret, or ``STATE_DIR/secrets/signing-keys.json``)::

    {"active": "k20261206-3fa9",
     "keys": {"k20261206-3fa9": {"secret": "<base64>", "created_at": "2026-12-06T07:00:00Z"}}}

The active key signs; every key in the file verifies. Rotation adds a key and makes it active, so what the
old key signed still loads; removing the old key later ends that. A signature reads ``v1:KEY_ID:HEX``.

Examples
--------
>>> ring = Keyring({"k1": b"0" * 32}, "k1")
>>> signature = ring.sign(b"payload")
>>> signature[:6], ring.verify(b"payload", signature)
('v1:k1:', 'k1')
>>> ring.verify(b"tampered", signature)
Traceback (most recent call last):
...
eddy.core.signing.SignatureError: signature by key k1 does not match the content
>>> ring.verify(b"payload", "")
Traceback (most recent call last):
...
eddy.core.signing.SignatureError: unsigned: no signature
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eddy.core.times import iso_utc

log = logging.getLogger(__name__)

VERSION = "v1"
SECRET_BYTES = 32
# Shorter secrets make HMAC-SHA256 guessable; the generated ones are 32 bytes.
MIN_SECRET_BYTES = 16
DEFAULT_KEYRING = Path("secrets") / "signing-keys.json"
# The audit log's entries for a change of keys (``eddy keys rotate|remove``; event types on eddy.model-events).
KEY_ROTATED = "signing_key_rotated"
KEY_REMOVED = "signing_key_removed"
KEY_AUDIT_ACTIONS = frozenset({KEY_ROTATED, KEY_REMOVED})


class SignatureError(ValueError):
    """A signature that is missing, malformed, by an unknown key, or that does not match.

    ``reason`` is one word for metrics and dead-letter headers: ``unsigned``, ``malformed``,
    ``unknown_key`` or ``bad_signature``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyringError(ValueError):
    """A keyring that cannot be found or read: a configuration error, raised at start."""


@dataclass(frozen=True)
class Keyring:
    """Signing keys by id; ``active`` signs, all of them verify."""

    keys: Mapping[str, bytes]
    active: str
    created_at: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.active not in self.keys:
            raise KeyringError(f"the active key {self.active!r} is not in the keyring ({', '.join(self.keys)})")
        for key_id, secret in self.keys.items():
            if not key_id or ":" in key_id or "," in key_id:
                raise KeyringError(f"key id {key_id!r}: must be non-empty, without ':' or ','")
            if len(secret) < MIN_SECRET_BYTES:
                raise KeyringError(f"key {key_id}: a secret of {len(secret)} bytes is too short (>= 16)")

    def sign(self, data: bytes) -> str:
        """The active key's signature of ``data``."""
        return f"{VERSION}:{self.active}:{_mac(self.keys[self.active], data)}"

    def verify(self, data: bytes, signature: str) -> str:
        """The id of the key that signed ``data``.

        Raises
        ------
        SignatureError
            Unless ``signature`` is a valid signature of ``data`` by a key of this keyring.
        """
        if not signature:
            raise SignatureError("unsigned", "unsigned: no signature")
        version, _, rest = signature.partition(":")
        key_id, _, mac = rest.partition(":")
        if version != VERSION or not key_id or not mac:
            raise SignatureError("malformed", f"malformed signature {signature[:80]!r} (expected v1:KEY_ID:HEX)")
        secret = self.keys.get(key_id)
        if secret is None:
            raise SignatureError(
                "unknown_key", f"signed by key {key_id!r}, which this keyring does not hold ({', '.join(self.keys)})"
            )
        if not hmac.compare_digest(_mac(secret, data), mac):
            raise SignatureError("bad_signature", f"signature by key {key_id} does not match the content")
        return key_id

    def rotated(self, key_id: str | None = None) -> Keyring:
        """This keyring with a new, active key; the old ones still verify.

        >>> ring = Keyring({"k1": b"0" * 32}, "k1").rotated("k2")
        >>> ring.active, sorted(ring.keys)
        ('k2', ['k1', 'k2'])
        """
        key_id = key_id or new_key_id()
        if key_id in self.keys:
            raise KeyringError(f"key {key_id!r} is already in the keyring")
        return Keyring(
            {**self.keys, key_id: secrets.token_bytes(SECRET_BYTES)},
            key_id,
            {**self.created_at, key_id: iso_utc(int(time.time() * 1000))},
        )

    def without(self, key_id: str) -> Keyring:
        """This keyring without ``key_id``: what it signed no longer loads. The active key cannot go.

        >>> Keyring({"k1": b"0" * 32, "k2": b"1" * 32}, "k2").without("k1").keys.keys()
        dict_keys(['k2'])
        """
        if key_id not in self.keys:
            raise KeyringError(f"key {key_id!r} is not in the keyring ({', '.join(self.keys)})")
        if key_id == self.active:
            raise KeyringError(f"key {key_id!r} is the active key: rotate to a new key before removing it")
        return Keyring(
            {k: v for k, v in self.keys.items() if k != key_id},
            self.active,
            {k: v for k, v in self.created_at.items() if k != key_id},
        )

    def to_json(self) -> str:
        keys = {
            key_id: {"secret": base64.b64encode(secret).decode(), "created_at": self.created_at.get(key_id, "")}
            for key_id, secret in self.keys.items()
        }
        return json.dumps({"active": self.active, "keys": keys}, indent=2) + "\n"

    @classmethod
    def generate(cls, key_id: str | None = None) -> Keyring:
        key_id = key_id or new_key_id()
        return cls({key_id: secrets.token_bytes(SECRET_BYTES)}, key_id, {key_id: iso_utc(int(time.time() * 1000))})

    @classmethod
    def from_json(cls, text: str, where: str = "keyring") -> Keyring:
        """A keyring file's content.

        >>> Keyring.from_json('{"active": "k1", "keys": {"k1": {"secret": "' + "A" * 44 + '"}}}').active
        'k1'
        """
        try:
            doc = json.loads(text)
            keys = {str(k): base64.b64decode(v["secret"], validate=True) for k, v in doc["keys"].items()}
            created = {str(k): str(v.get("created_at", "")) for k, v in doc["keys"].items()}
            return cls(keys, str(doc["active"]), created)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            if isinstance(exc, KeyringError):
                raise KeyringError(f"{where}: {exc}") from exc
            shape = "{'active': ID, 'keys': {ID: {'secret': BASE64}}}"
            raise KeyringError(f"{where} is not a keyring ({shape}): {exc}") from exc

    @classmethod
    def from_setting(cls, text: str) -> Keyring:
        """``EDDY_SIGNING_KEYS``: ``KEY_ID:BASE64[,KEY_ID:BASE64...]``, the first one active.

        >>> Keyring.from_setting("new:" + "A" * 44 + ",old:" + "B" * 44).active
        'new'
        """
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in text.split(",")):
            key_id, sep, secret = item.partition(":")
            if not sep:
                raise KeyringError("EDDY_SIGNING_KEYS: each key is KEY_ID:BASE64_SECRET")
            try:
                keys[key_id.strip()] = base64.b64decode(secret.strip(), validate=True)
            except binascii.Error as exc:
                raise KeyringError(f"EDDY_SIGNING_KEYS: key {key_id!r} is not base64: {exc}") from exc
        return cls(keys, next(iter(keys)))


def new_key_id() -> str:
    return f"k{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(2)}"


def _mac(secret: bytes, data: bytes) -> str:
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def write_keyring(path: Path, keyring: Keyring, exclusive: bool = False) -> bool:
    """Write ``keyring`` to ``path`` (mode 0600) atomically; with ``exclusive``, only if none is there yet.

    Returns False when ``exclusive`` and another process created the file first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(keyring.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    if path.exists():
        # A rotation keeps who may read the file (a container's uid, a group): services must not lose it.
        _copy_access(path, tmp)
    if not exclusive:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)  # fails if the file exists: two processes starting at once keep one keyring
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def _copy_access(source: Path, target: Path) -> None:
    stat = source.stat()
    os.chmod(target, stat.st_mode & 0o777)
    try:
        os.chown(target, stat.st_uid, stat.st_gid)
    except PermissionError:  # only root may give a file away; others keep their own ownership
        log.warning("the keyring's owner could not be kept", extra={"path": str(source), "uid": stat.st_uid})


class KeyringSource:
    """The keyring a process signs and verifies with, re-read when its file changes (a rotation).

    ``path`` is a keyring file; ``static`` a keyring from ``EDDY_SIGNING_KEYS``, which wins.
    """

    recheck_s = 1.0

    def __init__(self, path: Path | None = None, static: Keyring | None = None) -> None:
        if path is None and static is None:
            raise KeyringError("a keyring source needs a file or a keyring")
        self.path = path
        self._keyring = static
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        if static is None:
            self.current()

    def current(self) -> Keyring:
        """The keyring now: the file is checked at most once a second, and re-read only when it changed."""
        if self.path is None or (self._keyring is not None and time.monotonic() - self._checked < self.recheck_s):
            assert self._keyring is not None
            return self._keyring
        with self._lock:
            self._checked = time.monotonic()
            try:
                stat = self.path.stat()
            except FileNotFoundError as exc:
                if self._keyring is not None:
                    log.error("signing keyring %s is gone: keeping the keys read before", self.path)
                    return self._keyring
                raise KeyringError(f"no signing keyring at {self.path}") from exc
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp or self._keyring is None:
                try:
                    keyring = Keyring.from_json(self.path.read_text(), str(self.path))
                except (OSError, KeyringError) as exc:
                    if self._keyring is None:
                        raise KeyringError(f"signing keyring {self.path}: {exc}") from exc
                    # Mid-rotation (a file being replaced, its access being restored): keep the keys read before.
                    log.error("signing keyring unreadable: keeping the keys read before", extra={"error": str(exc)})
                    return self._keyring
                if self._keyring is not None and keyring != self._keyring:
                    shown = {"active_key": keyring.active, "keys": list(keyring.keys)}
                    log.info("signing keyring reloaded", extra=shown)
                self._keyring, self._stamp = keyring, stamp
            return self._keyring

    def sign(self, data: bytes) -> str:
        return self.current().sign(data)

    def verify(self, data: bytes, signature: str) -> str:
        return self.current().verify(data, signature)


def keyring_source(keys_setting: str, keys_file: str, state_dir: Path) -> KeyringSource:
    """The keyring of a process's settings (``EDDY_SIGNING_KEYS``, ``EDDY_SIGNING_KEYS_FILE``, ``EDDY_STATE_DIR``).

    A keyring file named by ``EDDY_SIGNING_KEYS_FILE`` must exist. Without one, the state dir's keyring is used,
    and made with one fresh key if there is none yet: the processes of one machine sharing a state dir (the
    embedded stack, tests) share it. Processes on several machines need the same keyring file (a secret).

    >>> import tempfile
    >>> source = keyring_source("", "", Path(tempfile.mkdtemp()))
    >>> source.verify(b"x", source.sign(b"x")) == source.current().active
    True
    """
    if keys_setting.strip():
        return KeyringSource(static=Keyring.from_setting(keys_setting))
    if keys_file:
        path = Path(keys_file)
        if not path.exists():
            raise KeyringError(
                f"EDDY_SIGNING_KEYS_FILE={keys_file}: no such file "
                f"(create one with `eddy keys init --file {keys_file}`)"
            )
        return KeyringSource(path)
    path = state_dir / DEFAULT_KEYRING
    if not path.exists() and write_keyring(path, Keyring.generate(), exclusive=True):
        log.warning("created a signing keyring: every eddy process must share it", extra={"path": str(path)})
    return KeyringSource(path)


def describe(keyring: Keyring) -> list[dict[str, Any]]:
    """The keyring without its secrets: ids, which one signs, when each was made.

    >>> describe(Keyring({"k1": b"0" * 32}, "k1", {"k1": "2026-12-06T07:00:00Z"}))
    [{'key_id': 'k1', 'active': True, 'created_at': '2026-12-06T07:00:00Z'}]
    """
    return [
        {"key_id": key_id, "active": key_id == keyring.active, "created_at": keyring.created_at.get(key_id, "")}
        for key_id in keyring.keys
    ]

"""API keys with roles, for every HTTP API of eddy.

Keys
----
``EDDY_API_KEYS`` holds entries separated by commas, each ``NAME:KEY:ROLE``
(or the older ``KEY:ROLE``). ``EDDY_API_KEYS_FILE`` names a file with the same
entries, one per line; blank lines and lines starting with ``#`` are ignored
(a mounted Kubernetes Secret, say). Both may be set: their keys add up. A file
that is named but holds no key is an error, not an open API.

``NAME`` is the key's identity: the audit log records it as the actor
(``user:NAME``) of every operator action done with the key. A ``KEY:ROLE``
entry's identity is ``key-`` and the first 8 hex digits of the key's SHA-256,
which tells keys apart without revealing them. Names are letters, digits and
``. _ @ -``; keys may hold neither ``,`` nor ``:`` (``openssl rand -hex 32``
makes a good one). Several keys may share a name (to rotate one without
downtime); a key may not appear twice.

Roles
-----
``producer``
    sends events and labels (ingestion) and asks for predictions (inference).
``viewer``
    reads: the model registry's GET APIs (models, experiments, ``/api/audit``)
    and the monitoring dashboard (``/dashboard``, ``/api/dashboard``).
``operator``
    everything, including the operator actions: promote, rollback, archive,
    retrain, record an experiment, and record an audit entry (``eddy dlq
    replay`` does, before and after it replays).

A client presents its key as ``X-API-Key: KEY``, ``Authorization: Bearer KEY``,
or HTTP Basic with the key as the password and any user name (what a browser
asks for when it opens the dashboard). No key or an unknown one is answered 401
with a ``WWW-Authenticate`` challenge, a known key with too small a role 403;
both with a JSON body saying why. The ``eddy`` CLI sends ``EDDY_API_KEY``.

``/healthz``, ``/metrics`` and ``/openapi.json`` stay open on every service:
Kubernetes probes and Prometheus scrape them without a key, and they reveal no
records.

When no key is configured (the embedded default), every API is open and the
actor of a change is whoever the client says it is.

Keys are never logged nor echoed in an error (parse errors name the entry by
its position): only their SHA-256 digests are kept, and a presented key is
compared with every one of them in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PRODUCER, VIEWER, OPERATOR = "producer", "viewer", "operator"
ROLES = (PRODUCER, VIEWER, OPERATOR)
KEYS_ENV = "EDDY_API_KEYS"
KEYS_FILE_ENV = "EDDY_API_KEYS_FILE"
CLIENT_KEY_ENV = "EDDY_API_KEY"
KEY_HEADER = "X-API-Key"
REALM = "eddy"
# Bearer for programs; Basic so that a browser opening the dashboard asks for the key.
CHALLENGES = (f'Bearer realm="{REALM}"', f'Basic realm="{REALM}", charset="UTF-8"')
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
FORMAT = f"NAME:KEY:ROLE (or KEY:ROLE) with a role in {', '.join(ROLES)}"


class AuthConfigError(ValueError):
    """``EDDY_API_KEYS`` or ``EDDY_API_KEYS_FILE`` that does not parse or cannot be read."""


@dataclass(frozen=True)
class Principal:
    """Who made a request: the identity and role of its key (``authenticated`` false when keys are off)."""

    name: str
    role: str
    authenticated: bool = True


OPEN = Principal("anonymous", OPERATOR, authenticated=False)
"""Every caller when no key is configured: the APIs are open."""


@dataclass(frozen=True)
class Denied:
    """A refused request: 401 (no or an unknown key) or 403 (a role too small), and why."""

    status: int
    message: str

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The ``WWW-Authenticate`` challenges of a 401 (one header each, as browsers expect)."""
        return [("WWW-Authenticate", challenge) for challenge in CHALLENGES] if self.status == 401 else []

    def body(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its identity, its role and the SHA-256 of the key (never the key itself)."""

    name: str
    role: str
    digest: bytes = field(repr=False)


def fingerprint(key: str) -> str:
    """The identity of a key configured without a name: not the key, and not reversible to it.

    >>> fingerprint("k1")
    'key-6ab9f1eb'
    """
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys, and who a request's key says the caller is.

    >>> keys = ApiKeys.parse("vera:k1:viewer, k2:operator")
    >>> keys.identify({"X-API-Key": "k1"}), keys.identify({"authorization": "Bearer nope"})
    (Principal(name='vera', role='viewer', authenticated=True), None)
    >>> keys.check({"X-API-Key": "k1"}, OPERATOR, "promote").status
    403
    >>> keys.check({"Authorization": "Bearer k2"}, OPERATOR, "promote").name
    'key-015f7e6b'
    """

    keys: tuple[ApiKey, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @classmethod
    def parse(cls, text: str, source: str = KEYS_ENV) -> ApiKeys:
        """The keys of comma-separated entries (``source`` names them in errors).

        Raises
        ------
        AuthConfigError
            Naming the first entry (by position, never by content) that does not parse.
        """
        entries = [(f"{source}: entry {n}", item) for n, item in enumerate(_items(text), 1)]
        return cls(_keys(entries))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiKeys:
        """The keys of ``EDDY_API_KEYS`` and of the file ``EDDY_API_KEYS_FILE`` names, together.

        Raises
        ------
        AuthConfigError
            If an entry does not parse, a key repeats, or the file cannot be read or holds no key.
        """
        env = os.environ if environ is None else environ
        entries = [(f"{KEYS_ENV}: entry {n}", item) for n, item in enumerate(_items(env.get(KEYS_ENV, "")), 1)]
        path = env.get(KEYS_FILE_ENV, "").strip()
        if path:
            from_file = _file_entries(Path(path))
            if not from_file:
                raise AuthConfigError(f"{KEYS_FILE_ENV}: {path} holds no key; refusing to serve the APIs open")
            entries += from_file
        return cls(_keys(entries))

    def identify(self, headers: Mapping[str, str]) -> Principal | None:
        """Whose key ``headers`` present; None for no key or one that is not configured."""
        presented = presented_key(headers)
        if presented is None:
            return None
        # A header that is not UTF-8 arrives surrogate-escaped: hash its bytes as sent (it matches no key).
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        # Every key is compared, in constant time: the answer's timing must not say which key nearly matched.
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest) and found is None:
                found = key
        return None if found is None else Principal(found.name, found.role)

    def check(self, headers: Mapping[str, str], needed: str, action: str) -> Principal | Denied:
        """Who may ``action`` (which needs the ``needed`` role), or why not; :data:`OPEN` when keys are off."""
        if not self.enabled:
            return OPEN
        if presented_key(headers) is None:
            return Denied(401, f"an API key is required to {action}: send it as {KEY_HEADER} or Authorization: Bearer")
        principal = self.identify(headers)
        if principal is None:
            return Denied(401, "the API key is not valid")
        if not allows(principal.role, needed):
            return Denied(403, f"the {principal.role} role may not {action}; that needs the {needed} role")
        return principal


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what needs ``needed``: the same role, or operator, which may do everything.

    >>> allows(OPERATOR, PRODUCER), allows(VIEWER, PRODUCER), allows(PRODUCER, VIEWER)
    (True, False, False)
    """
    return role in (needed, OPERATOR)


def needed_role(method: str) -> str:
    """The role an API's ``method`` needs unless it says otherwise: viewer to read, operator to change."""
    return VIEWER if method.upper() in ("GET", "HEAD") else OPERATOR


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: ``X-API-Key``, else a Bearer token, else a Basic password.

    >>> presented_key({"Authorization": "Basic " + base64.b64encode(b"me:k1").decode()})
    'k1'
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    if KEY_HEADER.lower() in lowered:
        return lowered[KEY_HEADER.lower()].strip() or None
    scheme, _, credentials = lowered.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, or a header that is not ASCII at all
            return None
        return decoded.partition(":")[2] or None
    return None


def client_headers(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers a client sends: ``X-API-Key`` from ``EDDY_API_KEY`` when it is set."""
    key = (os.environ if environ is None else environ).get(CLIENT_KEY_ENV, "").strip()
    return {KEY_HEADER: key} if key else {}


# -- parsing ---------------------------------------------------------------------------------------


def _items(text: str) -> list[str]:
    return [item for item in (part.strip() for part in text.split(",")) if item]


def _file_entries(path: Path) -> list[tuple[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthConfigError(f"{KEYS_FILE_ENV}: cannot read {path}: {exc}") from exc
    return [
        (f"{KEYS_FILE_ENV}: {path} line {n}", item)
        for n, line in enumerate(text.splitlines(), 1)
        if not line.strip().startswith("#")
        for item in _items(line)
    ]


def _keys(entries: Iterable[tuple[str, str]]) -> tuple[ApiKey, ...]:
    keys: list[ApiKey] = []
    for where, item in entries:
        key = _key(where, item)
        if any(hmac.compare_digest(key.digest, other.digest) for other in keys):
            raise AuthConfigError(f"{where} repeats the key of an earlier entry")
        keys.append(key)
    return tuple(keys)


def _key(where: str, item: str) -> ApiKey:
    # Messages name the entry by position only: its text holds a key.
    parts = [part.strip() for part in item.split(":")]
    if len(parts) not in (2, 3) or parts[-1] not in ROLES or not all(parts):
        raise AuthConfigError(f"{where} is not {FORMAT}")
    *name, key, role = parts
    if name and not NAME.fullmatch(name[0]):
        raise AuthConfigError(
            f"{where}: a name is 1 to 64 letters, digits or . _ @ - (starting with one of the first two)"
        )
    identity = name[0] if name else fingerprint(key)
    return ApiKey(identity, role, hashlib.sha256(key.encode()).digest())

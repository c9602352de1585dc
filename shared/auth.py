"""API keys with roles, for every HTTP API of eddy.

``EDDY_API_KEYS`` holds ``key:role`` pairs separated by commas. Roles:
``producer`` may send events and labels, ``viewer`` may read, and
``operator`` may do both plus operator actions. When no key is configured
(the embedded default), the APIs are open. Keys come in the ``X-API-Key``
header or as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("producer", "viewer", "operator")


class AuthConfigError(ValueError):
    """``EDDY_API_KEYS`` that does not parse."""


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys.

    >>> keys = ApiKeys.parse("k1:producer, k2:viewer")
    >>> keys.role_of({"X-API-Key": "k1"}), keys.role_of({"Authorization": "Bearer k2"}), keys.role_of({})
    ('producer', 'viewer', None)
    """

    keys: tuple[tuple[str, str], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @classmethod
    def parse(cls, text: str) -> ApiKeys:
        pairs = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, role = item.rpartition(":")
            if not sep or not key or role not in ROLES:
                raise AuthConfigError(f"EDDY_API_KEYS: {item!r} is not KEY:ROLE with a role in {', '.join(ROLES)}")
            pairs.append((key, role))
        return cls(tuple(pairs))

    @classmethod
    def from_env(cls) -> ApiKeys:
        return cls.parse(os.environ.get("EDDY_API_KEYS", ""))

    def role_of(self, headers: Mapping[str, str]) -> str | None:
        """The role of the key presented in ``headers``, or None for no or an unknown key."""
        presented = headers.get("X-API-Key")
        if presented is None:
            auth = headers.get("Authorization", "")
            presented = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not presented:
            return None
        for key, role in self.keys:
            # Constant-time comparison: response timing must not reveal how much of a key matched.
            if hmac.compare_digest(key.encode(), presented.encode()):
                return role
        return None

    @staticmethod
    def allows(role: str, needed: str) -> bool:
        return role == needed or role == "operator"

"""Model versions and their aliases, as every service sees them.

The model registry is the only writer of aliases. Each of its events on
``eddy.model-events`` carries the stream's whole alias table in ``details``
(``{"roles": {"default@1": "champion", "default@2": "shadow"}, "canary": 0.1}``),
so a follower only ever needs the latest one: the topic is keyed by stream,
so within a stream the last event read is the newest state.

Aliases, MLflow-style pointers rather than fixed stages:

- ``champion``: exactly one per stream; its predictions are the answers.
- ``challenger``: at most one per stream; it answers the canary share of the
  traffic (chosen by a hash of ``event_id``) and predicts the rest in shadow.
- ``shadow``: predicts every event, never answers; learns and is evaluated.
- ``archived``: kept in the registry, not loaded by any service.

Examples
--------
>>> roles = StreamRoles("demo", {VersionKey("default", 1): CHAMPION, VersionKey("default", 2): SHADOW})
>>> str(roles.champion), [str(k) for k in roles.active]
('default@1', ['default@1', 'default@2'])
>>> StreamRoles.from_details("demo", roles.to_details()) == roles
True
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eddy.contracts.stream import StreamContract

CHAMPION, CHALLENGER, SHADOW, ARCHIVED = "champion", "challenger", "shadow", "archived"
ALIASES = (CHAMPION, CHALLENGER, SHADOW, ARCHIVED)

# Facts, written by the model registry only; each carries the stream's alias table.
REGISTERED = "registered"  # a new version (its alias in ``alias``)
PROMOTED = "promoted"  # a new champion; details: previous, reason, evidence, probation_labels
ROLLED_BACK = "rolled_back"  # the champion replaced by a previous one; details: from, reason, evidence
ARCHIVED_EVENT = "archived"
ALIASED = "aliased"  # any other alias change
SYNCED = "synced"  # the whole table, published when the registry starts (the broker may have lost the topic)
REGISTRY_FACTS = {REGISTERED, PROMOTED, ROLLED_BACK, ARCHIVED_EVENT, ALIASED, SYNCED}

# Requests to the registry, from retraining or users; the registry applies them or says why not.
PROMOTION_REQUESTED = "promotion_requested"  # details: expected_champion, reason, evidence
ROLLBACK_REQUESTED = "rollback_requested"  # details: expected_champion, to, reason, evidence
ARCHIVE_REQUESTED = "archive_requested"  # details: reason, evidence
REQUEST_REFUSED = "request_refused"  # by the registry: details: request (event_id), reason
REGISTRY_REQUESTS = {PROMOTION_REQUESTED, ROLLBACK_REQUESTED, ARCHIVE_REQUESTED}

# Retraining's own facts.
RETRAIN_REQUESTED = "retrain_requested"  # details: reason, evidence (from an alert, the schedule, a threshold, a user)
CHALLENGER_REJECTED = "challenger_rejected"  # a candidate that failed release checks or held-out evaluation
TRIAL_RESULT = "trial_result"  # a shadow or probation trial's evidence, whatever was decided


@dataclass(frozen=True, order=True)
class VersionKey:
    """One version of one of a stream's models: ``default@3``."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> VersionKey:
        """``name@version``.

        >>> VersionKey.parse("default@3")
        VersionKey(name='default', version=3)
        """
        name, sep, version = text.rpartition("@")
        if not sep or not name or not version.isdigit():
            raise ValueError(f"{text!r} is not a model version like default@3")
        return cls(name, int(version))


@dataclass(frozen=True)
class StreamRoles:
    """A stream's alias table: every registered version's alias, and the canary share."""

    stream: str
    aliases: Mapping[VersionKey, str] = field(default_factory=dict)
    canary: float = 0.0

    @property
    def champion(self) -> VersionKey:
        return next(k for k, a in self.aliases.items() if a == CHAMPION)

    @property
    def challenger(self) -> VersionKey | None:
        return next((k for k, a in self.aliases.items() if a == CHALLENGER), None)

    @property
    def active(self) -> tuple[VersionKey, ...]:
        """The versions services load: the champion first, then the rest in version order."""
        champion = self.champion
        rest = sorted(k for k, a in self.aliases.items() if a != ARCHIVED and k != champion)
        return (champion, *rest)

    def alias_of(self, key: VersionKey) -> str | None:
        return self.aliases.get(key)

    def to_details(self) -> dict[str, Any]:
        return {"roles": {str(k): a for k, a in sorted(self.aliases.items())}, "canary": self.canary}

    @classmethod
    def from_details(cls, stream: str, details: Mapping[str, Any]) -> StreamRoles | None:
        """The table in a registry event's details; None when it has none."""
        table = details.get("roles")
        if not isinstance(table, dict) or CHAMPION not in table.values():
            return None
        aliases = {VersionKey.parse(k): a for k, a in table.items() if a in ALIASES}
        return cls(stream, aliases, float(details.get("canary", 0.0)))


def default_roles(stream: str, model_names: list[str], canary: float = 0.0) -> StreamRoles:
    """The roles before the registry has spoken: each contract model at version 1, the first champion.

    >>> [str(k) + ":" + a for k, a in default_roles("demo", ["a", "b"]).aliases.items()]
    ['a@1:champion', 'b@1:shadow']
    """
    aliases = {VersionKey(name, 1): CHAMPION if i == 0 else SHADOW for i, name in enumerate(model_names)}
    return StreamRoles(stream, aliases, canary)


def contract_roles(contract: StreamContract) -> StreamRoles:
    """:func:`default_roles` for a contract's models and canary share."""
    return default_roles(contract.name, [m.name for m in contract.models], contract.retraining.canary)


def roles_of_event(event: Mapping[str, Any]) -> StreamRoles | None:
    """The alias table a model event carries: only the registry's facts carry one."""
    if event.get("event_type") not in REGISTRY_FACTS or event.get("actor") != "model_registry":
        return None
    return StreamRoles.from_details(event["stream"], event_details(event))


def event_details(event: Mapping[str, Any]) -> dict[str, Any]:
    try:
        details = json.loads(event.get("details") or "{}")
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}


def in_canary(event_id: str, share: float) -> bool:
    """Whether the challenger answers this event: a stable hash, so a replay routes it the same way.

    >>> in_canary("e1", 0.0), in_canary("e1", 1.0)
    (False, True)
    >>> sum(in_canary(f"e{i}", 0.1) for i in range(10_000))
    969
    """
    return share > 0 and zlib.crc32(event_id.encode()) % 10_000 < share * 10_000


def model_event(
    stream: str,
    key: VersionKey,
    event_type: str,
    actor: str,
    details: Mapping[str, Any] | None = None,
    *,
    alias: str | None = None,
    event_id: str | None = None,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """A ``ModelEvent`` record (schemas/model_event.avsc)."""
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "stream": stream,
        "model_name": key.name,
        "model_version": key.version,
        "event_type": event_type,
        "alias": alias,
        "actor": actor,
        "at_ms": at_ms if at_ms is not None else int(time.time() * 1000),
        "details": json.dumps(dict(details or {}), sort_keys=True, default=str),
    }

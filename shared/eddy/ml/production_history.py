"""What was in production when: the periods of a stream's serving table, from the registry's model events.

Every registry fact on ``eddy.model-events`` carries the stream's whole alias table (``StreamRoles``). A period
starts whenever what answers changes: the champion, the challenger or its canary share. It records why: the
event that changed it (a promotion, a rollback, a registration), who asked (``by``, an operator's key name or a
service) and the event's evidence (trial results, the alert, the reason). Events that leave what answers as it
was (a shadow registered, a resync after a restart) start no period.

Examples
--------
>>> from eddy.ml.roles import VersionKey
>>> def fact(at, kind, table, canary=0.0, **details):
...     roles = {"roles": table, "canary": canary, **details}
...     return {"stream": "demo", "event_type": kind, "actor": "model_registry", "at_ms": at,
...             "model_name": "default", "model_version": 1, "details": json.dumps(roles)}
>>> events = [
...     fact(1000, "registered", {"default@1": "champion"}),
...     fact(2000, "registered", {"default@1": "champion", "default@2": "challenger"}, 0.1, reason="drift"),
...     fact(3000, "promoted", {"default@1": "archived", "default@2": "champion"}, by="user:ann"),
... ]
>>> periods = production_history(events)
>>> for p in periods:
...     print(p.start_ms, p.end_ms, p.champion, p.challenger, p.canary, p.cause, p.by)
1000 2000 default@1 None 0.0 registered model_registry
2000 3000 default@1 default@2 0.1 registered model_registry
3000 None default@2 None 0.0 promoted user:ann
>>> answering_at(periods, 2500).challenger, answering_at(periods, 500)
(VersionKey(name='default', version=2), None)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from eddy.ml.roles import VersionKey, event_details, roles_of_event

# The alias table and its canary share are the period itself; the rest of the details is its evidence.
TABLE_KEYS = frozenset({"roles", "canary"})


@dataclass(frozen=True)
class Period:
    """From ``start_ms`` until ``end_ms`` (None: still), ``champion`` answered, and ``challenger`` its share."""

    stream: str
    start_ms: int
    end_ms: int | None
    champion: VersionKey
    challenger: VersionKey | None
    canary: float
    cause: str
    by: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "from_ms": self.start_ms,
            "until_ms": self.end_ms,
            "champion": str(self.champion),
            "challenger": str(self.challenger) if self.challenger else None,
            "canary": self.canary,
            "cause": self.cause,
            "by": self.by,
            "evidence": dict(self.evidence),
        }


def production_history(events: Iterable[Mapping[str, Any]]) -> list[Period]:
    """The periods of each stream's serving table, oldest first, from model events in the order they were read.

    Only the registry's facts count (``roles_of_event``): requests and other services' events carry no table.
    """
    periods: list[Period] = []
    current: dict[str, int] = {}  # stream -> index of its open period
    for event in events:
        roles = roles_of_event(event)
        if roles is None:
            continue
        champion, challenger = roles.champion, roles.challenger
        canary = roles.canary if challenger is not None else 0.0
        open_index = current.get(roles.stream)
        before = periods[open_index] if open_index is not None else None
        if before is not None and (before.champion, before.challenger, before.canary) == (champion, challenger, canary):
            continue
        details = event_details(event)
        at_ms = int(event["at_ms"])
        if open_index is not None:
            periods[open_index] = replace(periods[open_index], end_ms=at_ms)
        period = Period(
            stream=roles.stream,
            start_ms=at_ms,
            end_ms=None,
            champion=champion,
            challenger=challenger,
            canary=canary,
            cause=str(event["event_type"]),
            by=str(details.get("by") or event.get("actor") or ""),
            evidence={k: v for k, v in details.items() if k not in TABLE_KEYS},
        )
        current[roles.stream] = len(periods)
        periods.append(period)
    return periods


def answering_at(periods: Sequence[Period], at_ms: int, stream: str | None = None) -> Period | None:
    """The period of ``stream`` (or of the only stream) that holds ``at_ms``; None before the first one."""
    for period in periods:
        if stream is not None and period.stream != stream:
            continue
        if period.start_ms <= at_ms and (period.end_ms is None or at_ms < period.end_ms):
            return period
    return None


def history_json(periods: Sequence[Period]) -> str:
    """The periods as one JSON document, for ``--json`` output."""
    return json.dumps([p.to_json() for p in periods])

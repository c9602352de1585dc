"""``eddy models history S [--at TIME]``: which version answered when, since when, and why.

Built from ``eddy.model-events`` (``eddy.ml.production_history``), which keeps every registry fact, so the
history survives restarts as the registry does. ``--at`` names the one period holding that time: the champion,
and a challenger with its canary share during a trial.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from eddy.cli.common import CliError, resolve_settings
from eddy.core.settings import Settings
from eddy.core.times import iso_utc
from eddy.core.topics import MODEL_EVENTS_TOPIC
from eddy.history.bounds import BoundError, parse_bound
from eddy.ml.production_history import Period, answering_at, production_history


def model_events(settings: Settings) -> Iterator[dict[str, Any]]:
    """Every model event on ``eddy.model-events``, decoded, in the order of each partition."""
    from eddy.avro.serde import SerdeRegistry, registry_client
    from eddy.history.reader import read_to_end

    serde = SerdeRegistry(registry_client(settings), settings.schemas_dir, {}).for_topic(MODEL_EVENTS_TOPIC)
    for batch in read_to_end(settings, [MODEL_EVENTS_TOPIC]):
        yield from (value for value in serde.decode_many([m.value() for m in batch]) if isinstance(value, dict))


def cmd_history(args: argparse.Namespace) -> int:
    at_ms = None
    if args.at:
        try:
            bound = parse_bound(args.at, "--at")
        except BoundError as exc:
            raise CliError(str(exc)) from exc
        if bound.kind != "time":
            raise CliError(f"--at {args.at!r}: a time (ISO 8601 or epoch milliseconds), not an offset")
        at_ms = bound.value
    events = sorted(model_events(resolve_settings()), key=lambda e: int(e.get("at_ms") or 0))
    periods = [p for p in production_history(events) if p.stream == args.stream]
    if not periods:
        raise CliError(f"no registry facts for stream {args.stream!r} on {MODEL_EVENTS_TOPIC}")
    if at_ms is not None:
        found = answering_at(periods, at_ms, args.stream)
        if found is None:
            raise CliError(f"nothing answered {args.stream!r} at {iso_utc(at_ms)}: its first version came later")
        periods = [found]
    if args.json:
        print(json.dumps([p.to_json() for p in periods]))
        return 0
    for period in periods:
        print(describe(period))
    return 0


def describe(period: Period) -> str:
    """One period as a line for people.

    >>> from eddy.ml.roles import VersionKey
    >>> line = describe(Period("demo", 0, None, VersionKey("default", 2), VersionKey("default", 3), 0.1,
    ...                        "registered", "retraining", {"reason": "concept_drift"}))
    >>> for part in line.split("  "):
    ...     print(part)
    1970-01-01T00:00:00.000Z .. now
    default@2 answers, default@3 answers 10%
    registered by retraining (reason: concept_drift)
    """
    until = iso_utc(period.end_ms) if period.end_ms is not None else "now"
    answers = f"{period.champion} answers"
    if period.challenger is not None:
        answers += f", {period.challenger} answers {period.canary:.0%}"
    reason = period.evidence.get("reason")
    why = f"{period.cause} by {period.by}" + (f" (reason: {reason})" if reason else "")
    return f"{iso_utc(period.start_ms)} .. {until}  {answers}  {why}"

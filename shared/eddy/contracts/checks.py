"""A record against its contract: every rule it breaks, as violations (the dead letter's reasons).

Validation routes on these; inference's HTTP API answers a bad request with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from eddy.contracts.records import ahead
from eddy.contracts.stream import FeatureSpec, StreamContract
from eddy.core.limits import MAX_FUTURE_MS

MAX_VIOLATION_VALUE_CHARS = 200


@dataclass(frozen=True)
class Violation:
    """One broken rule: which field, which rule, what value."""

    field: str
    rule: str
    value: Any
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "rule": self.rule, "value": _jsonable(self.value), "message": self.message}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_VIOLATION_VALUE_CHARS:
        return f"{text[:MAX_VIOLATION_VALUE_CHARS]}... ({len(text)} characters)"
    return text


def check_record(value: dict[str, Any], contract: StreamContract, not_after_ms: int | None = None) -> list[Violation]:
    """Every way ``value`` breaks ``contract``; empty when it is valid.

    With ``not_after_ms``, an event time after it breaks the rule ``future``: Kafka refuses a record
    stamped more than ``log.message.timestamp.after.max.ms`` (1 h by default) ahead of the broker's clock,
    and with it every other record of its batch, so such an event is dead-lettered instead of forwarded.

    Examples
    --------
    >>> from eddy.contracts.stream import load_contract
    >>> from eddy.core.settings import REPO_ROOT
    >>> demo = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
    >>> ok = {"event_id": "e1", "event_time_ms": 1, "x0": 1.0, "x1": 2.0, "x2": 3.0, "region": "north"}
    >>> check_record(ok, demo)
    []
    >>> [v.rule for v in check_record({**ok, "x0": 11.0, "region": "mars"}, demo)]
    ['max', 'allowed']
    >>> [v.rule for v in check_record({**ok, "event_time_ms": 10_000}, demo, not_after_ms=9_999)]
    ['future']
    """
    violations: list[Violation] = []
    event_id = value.get(contract.id_field)
    if not isinstance(event_id, str) or not event_id.strip():
        violations.append(Violation(contract.id_field, "required", event_id, "the event id must be a non-empty string"))
    event_time = value.get(contract.time_field)
    if not isinstance(event_time, int) or isinstance(event_time, bool) or event_time <= 0:
        violations.append(
            Violation(contract.time_field, "positive", event_time, "event time must be epoch milliseconds > 0")
        )
    elif not_after_ms is not None and event_time > not_after_ms:
        violations.append(
            Violation(
                contract.time_field,
                "future",
                event_time,
                f"event time {event_time} is {ahead(event_time, not_after_ms - MAX_FUTURE_MS)} ahead of the time "
                f"it was checked; Kafka refuses records over {MAX_FUTURE_MS // 60_000} min in the future",
            )
        )
    for spec in contract.features:
        violations.extend(_check_feature(spec, value.get(spec.name)))
    return violations


def _check_feature(spec: FeatureSpec, value: Any) -> list[Violation]:
    """The first rule ``value`` breaks, in the order type, finite, range, allowed, pattern (one per feature)."""
    if value is None:
        if spec.required:
            return [Violation(spec.name, "required", None, f"{spec.name} is required")]
        return []
    if spec.type in ("double", "long"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return [Violation(spec.name, "type", value, f"{spec.name} must be a number, got {type(value).__name__}")]
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            return [Violation(spec.name, "finite", value, f"{spec.name} must be a finite number")]
        if spec.min is not None and number < spec.min:
            return [Violation(spec.name, "min", value, f"{spec.name}={value} is below the minimum {spec.min}")]
        if spec.max is not None and number > spec.max:
            return [Violation(spec.name, "max", value, f"{spec.name}={value} is above the maximum {spec.max}")]
    if spec.allowed is not None and value not in spec.allowed:
        allowed = ", ".join(str(a) for a in spec.allowed)
        return [Violation(spec.name, "allowed", value, f"{spec.name}={value!r} is not one of: {allowed}")]
    regex = spec.regex
    # Search semantics, as in JSON Schema: anchor the pattern with ^...$ to match the whole value.
    if regex is not None and isinstance(value, str) and regex.search(value) is None:
        return [Violation(spec.name, "pattern", value, f"{spec.name}={value!r} does not match {spec.pattern!r}")]
    return []


class CompiledChecker:
    """``check_record`` for one contract, with a fast path for the common case of a valid record.

    The fast path only answers "valid or not"; when it says no, ``check_record``
    builds the violations, so the rules and their messages live in one place.
    A property test checks that both always agree.
    """

    def __init__(self, contract: StreamContract) -> None:
        self.contract = contract
        inf = math.inf
        self._numeric = tuple(
            (
                f.name,
                f.required,
                -inf if f.min is None else f.min,
                inf if f.max is None else f.max,
                frozenset(f.allowed) if f.allowed is not None else None,
            )
            for f in contract.features
            if f.type in ("double", "long")
        )
        self._other = tuple(
            (f.name, f.required, frozenset(f.allowed) if f.allowed is not None else None, f.regex)
            for f in contract.features
            if f.type not in ("double", "long")
        )

    def __call__(self, value: dict[str, Any], not_after_ms: int | None = None) -> list[Violation]:
        return [] if self._valid(value, not_after_ms) else check_record(value, self.contract, not_after_ms)

    def _valid(self, value: dict[str, Any], not_after_ms: int | None) -> bool:
        event_id = value.get(self.contract.id_field)
        if type(event_id) is not str or not event_id.strip():
            return False
        event_time = value.get(self.contract.time_field)
        if type(event_time) is not int or event_time <= 0:
            return False
        if not_after_ms is not None and event_time > not_after_ms:
            return False
        for name, required, lo, hi, allowed in self._numeric:
            x = value.get(name)
            if x is None:
                if required:
                    return False
                continue
            kind = type(x)
            if kind is not float and kind is not int:
                return False
            # NaN fails every comparison and inf - inf is NaN: one test covers range and finiteness.
            try:
                if not lo <= x <= hi or x - x != 0:
                    return False
            except OverflowError:  # an int too large for a float
                return False
            if allowed is not None and x not in allowed:
                return False
        for name, required, allowed, regex in self._other:
            x = value.get(name)
            if x is None:
                if required:
                    return False
                continue
            try:
                if allowed is not None and x not in allowed:
                    return False
            except TypeError:  # an unhashable value is not an allowed category
                return False
            if regex is not None and isinstance(x, str) and regex.search(x) is None:
                return False
        return True

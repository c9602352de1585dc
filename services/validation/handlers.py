"""Pure validation rules: a record and its contract in, a list of violations out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from services.validation import metrics
from shared.contracts import FeatureSpec, StreamContract
from shared.dlq import Violation
from shared.loop import BatchResult, InRecord, OutRecord
from shared.topics import StreamTopics


def check_record(value: dict[str, Any], contract: StreamContract) -> list[Violation]:
    """Every way ``value`` breaks ``contract``; empty when it is valid.

    Examples
    --------
    >>> from shared.contracts import load_contract
    >>> from shared.settings import REPO_ROOT
    >>> demo = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
    >>> ok = {"event_id": "e1", "event_time_ms": 1, "x0": 1.0, "x1": 2.0, "x2": 3.0, "region": "north"}
    >>> check_record(ok, demo)
    []
    >>> [v.rule for v in check_record({**ok, "x0": 11.0, "region": "mars"}, demo)]
    ['max', 'allowed']
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
    for spec in contract.features:
        violations.extend(_check_feature(spec, value.get(spec.name)))
    return violations


def _check_feature(spec: FeatureSpec, value: Any) -> list[Violation]:
    if value is None:
        if spec.required:
            return [Violation(spec.name, "required", None, f"{spec.name} is required")]
        return []
    if spec.type in ("double", "long"):
        number = float(value)
        if not math.isfinite(number):
            return [Violation(spec.name, "finite", value, f"{spec.name} must be a finite number")]
        out = []
        if spec.min is not None and number < spec.min:
            out.append(Violation(spec.name, "min", value, f"{spec.name}={value} is below the minimum {spec.min}"))
        if spec.max is not None and number > spec.max:
            out.append(Violation(spec.name, "max", value, f"{spec.name}={value} is above the maximum {spec.max}"))
        return out
    if spec.allowed is not None and value not in spec.allowed:
        allowed = ", ".join(spec.allowed)
        return [Violation(spec.name, "allowed", value, f"{spec.name}={value!r} is not one of: {allowed}")]
    regex = spec.regex
    # Search semantics, as in JSON Schema: anchor the pattern with ^...$ to match the whole value.
    if regex is not None and isinstance(value, str) and regex.search(value) is None:
        return [Violation(spec.name, "pattern", value, f"{spec.name}={value!r} does not match {spec.pattern!r}")]
    return []


class ValidateBatch:
    """The validation handler: route each decoded event to S.validated or the DLQ."""

    def __init__(self, contracts: dict[str, StreamContract]) -> None:
        self.contracts = contracts

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        result = BatchResult()
        for record in records:
            contract = self.contracts[record.stream]
            violations = check_record(record.value, contract)
            if violations:
                for v in violations:
                    metrics.VIOLATIONS.labels(record.stream, v.field, v.rule).inc()
                summary = "; ".join(v.message for v in violations)
                result.dead.append(
                    record.dead(
                        "validation", f"contract:{violations[0].rule}", message=summary, violations=tuple(violations)
                    )
                )
                continue
            # Re-keyed by event_id whatever the producer used, so every topic of the stream co-partitions.
            result.outputs.append(
                OutRecord(
                    topic=StreamTopics(record.stream).validated,
                    key=record.value[contract.id_field],
                    value=record.value,
                    headers=record.headers,
                    timestamp_ms=record.value[contract.time_field],
                    source=record,
                )
            )
        return result

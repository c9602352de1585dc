"""Alert bookkeeping: one firing record when a condition starts, one resolved record when it clears.

A condition is identified by (stream, kind, subject), so a drift that persists
for an hour raises one alert, not thousands, and its resolved record pairs with
its firing record by ``alert_id``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eddy.core.offsets import widen
from eddy.services.monitoring import metrics


@dataclass
class Evidence:
    """The offsets a window covered, per partition of one topic."""

    topic: str
    ranges: dict[int, list[int]] = field(default_factory=dict)

    def cover(self, partition: int, offset: int) -> None:
        widen(self.ranges, partition, offset)

    def reset(self) -> None:
        self.ranges = {}

    def records(self) -> list[dict[str, int]]:
        return [{"partition": p, "first_offset": a, "last_offset": b} for p, (a, b) in sorted(self.ranges.items())]


@dataclass(frozen=True)
class Reading:
    """What a watcher measured when it judged a condition: the fields of the alert record."""

    statistic: str
    value: float
    threshold: float
    window: str
    evidence: Evidence
    trigger: tuple[int, int] = (-1, -1)  # (partition, offset) of the record that decided it
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)


class AlertBook:
    """The open alerts of one stream, and the records announcing their changes.

    Examples
    --------
    >>> book = AlertBook("demo", clock=lambda: 1.0)
    >>> reading = Reading("psi", 0.4, 0.2, "1000 events", Evidence("demo.validated"))
    >>> book.judge("data_drift", "x0", True, reading)["status"]
    'firing'
    >>> book.judge("data_drift", "x0", True, reading) is None  # still firing: no duplicate
    True
    >>> book.judge("data_drift", "x0", False, reading)["status"]
    'resolved'
    """

    def __init__(self, stream: str, clock: Callable[[], float] = time.time) -> None:
        self.stream = stream
        self.clock = clock
        self.open: dict[str, dict[str, Any]] = {}

    def is_open(self, kind: str, subject: str) -> bool:
        return f"{self.stream}:{kind}:{subject}" in self.open

    def judge(self, kind: str, subject: str, firing: bool, reading: Reading) -> dict[str, Any] | None:
        """The alert record if the condition (kind, subject) changed state, else None."""
        alert_id = f"{self.stream}:{kind}:{subject}"
        if firing == (alert_id in self.open):
            return None
        record = self._record(alert_id, kind, subject, "firing" if firing else "resolved", reading)
        if firing:
            self.open[alert_id] = record
            metrics.ALERTS_FIRING.labels(self.stream, kind).inc()
        else:
            del self.open[alert_id]
            metrics.ALERTS_FIRING.labels(self.stream, kind).dec()
        metrics.ALERTS.labels(self.stream, kind, record["status"]).inc()
        return record

    def _record(self, alert_id: str, kind: str, subject: str, status: str, reading: Reading) -> dict[str, Any]:
        partition, offset = reading.trigger
        span = reading.evidence.ranges.get(partition, [offset, offset])
        return {
            "alert_id": alert_id,
            "stream": self.stream,
            "kind": kind,
            "subject": subject,
            "statistic": reading.statistic,
            "value": float(reading.value),
            "threshold": float(reading.threshold),
            "window": reading.window,
            "severity": reading.severity,
            "status": status,
            "first_offset": span[0],
            "last_offset": span[1],
            "source_topic": reading.evidence.topic,
            "raised_at_ms": int(self.clock() * 1000),
            "details": json.dumps(reading.details, sort_keys=True),
            "source_partition": partition,
            "offsets": reading.evidence.records(),
        }

"""The dashboard's history: one point per tick, kept for a bounded number of ticks.

Counts and latencies accumulate during a tick; closing the tick turns them into
rates and percentiles and stores them with the gauges of that moment (quality,
drift). :meth:`Timeline.series` lays the points out as the arrays the web page
plots, with null where a series had no value yet.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import numpy as np

MAX_LATENCIES_PER_TICK = 20_000


class Timeline:
    """Points of the last ``size`` ticks, and markers (alerts, promotions) of the same period."""

    def __init__(self, size: int = 600, markers: int = 200) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=size)
        self.markers: deque[dict[str, Any]] = deque(maxlen=markers)
        self._counts: Counter[str] = Counter()
        self._latencies: list[float] = []
        self._opened_ms: int | None = None

    def count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def latencies(self, values_ms: list[float]) -> None:
        room = MAX_LATENCIES_PER_TICK - len(self._latencies)
        if room > 0:
            self._latencies.extend(values_ms[:room])

    def mark(self, t_ms: int, kind: str, label: str) -> None:
        self.markers.append({"t": t_ms, "kind": kind, "label": label})

    def close(self, now_ms: int, gauges: dict[str, dict[str, Any]]) -> None:
        """End the tick at ``now_ms``: rates over its length, latency percentiles, and ``gauges`` as they are."""
        opened = self._opened_ms if self._opened_ms is not None else now_ms - 1000
        seconds = max(0.001, (now_ms - opened) / 1000)
        throughput = {
            name: self._counts.get(name, 0) / seconds for name in ("validated", "predictions", "labeled", "dlq")
        }
        latency: dict[str, float | None] = {"p50": None, "p99": None}
        if self._latencies:
            p50, p99 = np.percentile(self._latencies, [50, 99])
            latency = {"p50": float(p50), "p99": float(p99)}
        self.points.append({"t": now_ms, "throughput": throughput, "latency_ms": latency, **gauges})
        self._counts.clear()
        self._latencies = []
        self._opened_ms = now_ms

    def series(self) -> dict[str, Any]:
        """``{"t": [...], group: {name: [...]}}``; nested groups (quality) keep their nesting."""
        points = list(self.points)
        out: dict[str, Any] = {"t": [p["t"] for p in points]}
        groups = {key for p in points for key in p if key != "t"}
        for group in sorted(groups):
            out[group] = _columns([p.get(group) or {} for p in points])
        return out


def _columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = sorted({name for row in rows for name in row})
    out: dict[str, Any] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if any(isinstance(v, dict) for v in values):
            out[name] = _columns([v if isinstance(v, dict) else {} for v in values])
        else:
            out[name] = values
    return out

"""Label freshness of one model version: label time → learned → served, and the lag of what is served.

Two inputs, both already on monitoring's way:

- ``S.labeled``: each example carries its label's time (``label_time_ms``, also the
  feedback record's Kafka timestamp) and when learning learned it (``joined_at_ms``):
  label → learned, exactly, on learning's clock.
- ``S.models`` (monitoring's control side feed): each snapshot learning publishes
  carries ``newest_label_ms``, the newest label it learned, and how far into
  ``S.feedback`` it had read (``source_offsets``). Inference swaps it in at its next
  poll of the same topic, so label → served is measured at the snapshot's
  publication (``created_at_ms``); inference's own ``eddy_label_to_served_seconds``
  measures the swap-in itself.
- ``S.feedback``'s end offsets (``feedback_ends.py``, once a tick): how far the labels go.

The **freshness lag** of a version is the age of the newest label its served
snapshot learned, while a newer label waits: produced past what the snapshot read
(``S.feedback`` ends more than one offset past its ``source_offsets``; one, because
a transaction's commit marker takes an offset), or learned and not yet in a
snapshot. It is 0 when nothing waits (a quiet stream is not lagging), and before
the first snapshot with labels is seen. A learner that falls behind, or stops,
leaves labels waiting, so its lag grows with its backlog.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from eddy.services.monitoring.alerts import Evidence


def quantile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile of ``values`` (None when empty).

    >>> quantile([0.3, 0.1, 0.2, 0.4], 0.5), quantile([0.3, 0.1, 0.2, 0.4], 0.99), quantile([], 0.5)
    (0.2, 0.4, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[rank]


class Freshness:
    """Freshness of one model version, from its labeled examples and its snapshots.

    Examples
    --------
    >>> f = Freshness("demo.labeled")
    >>> f.learned(label_ms=1_000, joined_ms=1_200, partition=0, offset=0)
    >>> f.lag_s(now_ms=2_000)  # learned, no snapshot with labels seen yet: nothing to date the lag by
    0.0
    >>> f.served(newest_label_ms=1_000, at_ms=1_500)
    >>> f.lag_s(now_ms=9_000)  # the served snapshot has every label learned
    0.0
    >>> f.learned(label_ms=3_000, joined_ms=3_100, partition=0, offset=1)
    >>> f.lag_s(now_ms=4_000)  # a newer label learned, not served: the served label's age
    3.0
    >>> f.served(newest_label_ms=3_000, at_ms=4_100, read={"demo.feedback:0": 40})
    >>> f.input_end({"demo.feedback:0": 90})  # 50 more labels produced, not read by the served snapshot
    >>> f.lag_s(now_ms=6_000)
    3.0
    >>> f.summary(now_ms=6_000, max_lag_s=2.0)["status"]
    'lagging'
    """

    def __init__(self, labeled_topic: str, samples: int = 10_000) -> None:
        # Recent samples (seconds), bounded: the quantiles describe the last ``samples`` labels and snapshots.
        self.to_learned: deque[float] = deque(maxlen=samples)
        self.to_served: deque[float] = deque(maxlen=samples)
        self.newest_learned_ms = 0
        self.served_ms = 0
        # What the served snapshot had read of S.feedback, and where S.feedback ends ("topic:partition" -> offset).
        self.served_read: dict[str, int] = {}
        # Per shard (None: the one exact model), the labels its served snapshot learned and what it read.
        self._readings: dict[int | None, tuple[int, dict[str, int]]] = {}
        self.ends: dict[str, int] = {}
        # The examples learned and not yet served: the alert's evidence.
        self.evidence = Evidence(labeled_topic)
        self.trigger: tuple[int, int] = (-1, -1)

    def learned(self, label_ms: int, joined_ms: int, partition: int, offset: int) -> None:
        """One labeled example of this version: its label was learned at ``joined_ms``."""
        self.to_learned.append(max(0, joined_ms - label_ms) / 1000)
        if label_ms > self.served_ms:
            self.newest_learned_ms = max(self.newest_learned_ms, label_ms)
            self.evidence.cover(partition, offset)
            self.trigger = (partition, offset)

    def served(
        self,
        newest_label_ms: int,
        at_ms: int,
        read: dict[str, int] | None = None,
        learned_count: int = 0,
        shard: int | None = None,
    ) -> None:
        """A snapshot of this version (of its ``shard``, for a sharded model) that learned ``learned_count`` labels,
        the newest from ``newest_label_ms``, was published at ``at_ms``, having read ``read`` of the input
        ("topic:partition" -> next offset).

        What it read counts whether or not its newest label is newer: labels sent together share one label
        time (a later snapshot learns the rest of them, on another partition, with no newer label), and labels
        that teach nothing (duplicates, dead letters) move the reading on alone. Like inference
        (``ServingTable.load``), a snapshot that learned less than the served one is not served: a restarted
        learner's first snapshots replay older states.
        """
        count, reading = self._readings.get(shard, (0, {}))
        if learned_count < count:
            return
        if learned_count > count:
            reading = dict(read or {})
        else:  # the same model published again: it has read what either reading says
            reading = {**reading, **{k: max(o, reading.get(k, 0)) for k, o in (read or {}).items()}}
        self._readings[shard] = (learned_count, reading)
        # Each shard learns its own partitions: a partition is read as far as every shard that reports it has read it.
        self.served_read = {}
        for _, shard_read in self._readings.values():
            for key, offset in shard_read.items():
                self.served_read[key] = min(offset, self.served_read.get(key, offset))
        if newest_label_ms <= self.served_ms:
            return  # no newer label served: nothing to time
        self.to_served.append(max(0, at_ms - newest_label_ms) / 1000)
        self.served_ms = newest_label_ms
        if self.newest_learned_ms <= newest_label_ms:
            self.evidence.reset()

    def input_end(self, ends: dict[str, int]) -> None:
        """Where ``S.feedback`` ends now, per "topic:partition"."""
        self.ends = ends

    def waiting(self) -> bool:
        """Whether a label produced or learned is not in the served snapshot."""
        if self.newest_learned_ms > self.served_ms:
            return True
        read = self.served_read
        return any(end > read.get(key, 0) + 1 for key, end in self.ends.items())

    def lag_s(self, now_ms: int) -> float:
        """The freshness lag (seconds) of what is served now: see the module's docstring."""
        if self.served_ms == 0 or not self.waiting():
            return 0.0
        return max(0, now_ms - self.served_ms) / 1000

    def summary(self, now_ms: int, max_lag_s: float | None) -> dict[str, Any]:
        """The dashboard document's ``freshness`` entry (seconds)."""
        learned, served = list(self.to_learned), list(self.to_served)
        lag = self.lag_s(now_ms)
        status = "unwatched" if max_lag_s is None else "lagging" if lag > max_lag_s else "ok"
        return {
            "label_to_learned_s": {"p50": quantile(learned, 0.5), "p99": quantile(learned, 0.99), "n": len(learned)},
            "label_to_served_s": {"p50": quantile(served, 0.5), "p99": quantile(served, 0.99), "n": len(served)},
            "lag_s": lag,
            "max_lag_s": max_lag_s,
            "status": status,
            "newest_learned_label_ms": self.newest_learned_ms or None,
            "served_label_ms": self.served_ms or None,
        }

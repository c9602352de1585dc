"""Retention gaps: offset ranges deleted by retention before a consumer read them, found and reported.

Consumers reset to ``earliest`` when their offset is no longer in the log, so a record deleted before it was
read would otherwise vanish in silence. :class:`GapDetector` knows where each partition should go on from (its
committed offset, a checkpoint's, or just past what was read) and, when the log start has moved past that
point, turns the skipped range into an :class:`OffsetGap`: logged, counted (``eddy_records_lost_total``),
shown in ``/healthz`` and written to the DLQ as a ``retention_gap`` dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Counter as Metric

from eddy.kafka.client import committed_offsets
from eddy.runtime import observability as obs
from eddy.runtime.dlq import RETENTION_GAP, DeadLetter

log = logging.getLogger(__name__)

Offsets = dict[tuple[str, int], int]

RECORDS_LOST = Metric(
    "eddy_records_lost_total",
    "Records deleted by retention before this consumer read them (each gap is also a retention_gap dead letter).",
    ["service", "topic"],
)


@dataclass(frozen=True)
class OffsetGap:
    """Offsets ``first``..``last`` of a partition, deleted by retention before this consumer read them.

    The consumer was positioned at ``first`` (its committed offset, a checkpoint's, or just past what it
    read) when the log start had already moved to ``log_start``: the client's offset reset skipped ahead.
    """

    topic: str
    partition: int
    first: int
    last: int
    log_start: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def dead_letter(self, service: str) -> DeadLetter:
        """The gap as a dead letter: no record to keep, the lost range and the reason in its headers."""
        message = (
            f"offsets {self.first}..{self.last} of {self.topic}:{self.partition} ({self.count} records) were deleted "
            f"by retention before {service} read them; it went on from the log start, offset {self.log_start}"
        )
        return DeadLetter(
            topic=self.topic,
            partition=self.partition,
            offset=self.first,
            key=None,
            value=None,
            headers=[],
            timestamp_ms=None,
            stage=service,
            reason=RETENTION_GAP,
            error_class="OffsetOutOfRange",
            message=message,
            extra=(
                ("gap.first_offset", str(self.first)),
                ("gap.last_offset", str(self.last)),
                ("gap.count", str(self.count)),
                ("gap.log_start_offset", str(self.log_start)),
            ),
        )


class GapDetector:
    """Where each partition should go on from, and the gaps found when the log no longer starts there.

    >>> gap = OffsetGap("s.events", 0, first=10, last=19, log_start=20)
    >>> gap.count, gap.dead_letter("validation").reason
    (10, 'retention_gap')
    """

    def __init__(
        self, consumer: Consumer, service: str, health: obs.Health, on_gap: Callable[[OffsetGap], None] | None
    ) -> None:
        self.consumer = consumer
        self.service = service
        self.health = health
        self._on_gap = on_gap
        # Partitions starting from the group's committed offset are looked up at their first batch.
        self._expected: Offsets = {}
        self._start_unknown: set[tuple[str, int]] = set()
        self._pending: list[OffsetGap] = []
        self.total = 0

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def expect(self, where: tuple[str, int], offset: int) -> None:
        """The partition's next record should be ``offset`` (a seek, a checkpoint, an assignment)."""
        self._expected[where] = offset

    def expect_committed(self, where: tuple[str, int]) -> None:
        """The partition goes on from the group's committed offset, looked up at its first batch."""
        self._start_unknown.add(where)

    def forget(self, where: tuple[str, int]) -> None:
        self._expected.pop(where, None)
        self._start_unknown.discard(where)

    def find(self, messages: Sequence[Message], positions: Offsets) -> None:
        """Note the offset ranges retention deleted before this batch's records of each partition could be read.

        Cheap when there is none: per partition that moved, one look at the low watermark the client
        cached from its last fetch. Only when the log starts past where the partition should have gone
        on are the batch's offsets walked, to find the exact range.
        """
        if self._start_unknown:
            self._look_up_starts()
        for where, position in positions.items():
            expected = self._expected.get(where)
            self._expected[where] = position
            if expected is None or position <= expected:
                continue  # nothing read in it (or rewound), or a start with nothing to compare
            low = self._log_start(where)
            if low <= expected:
                continue  # nothing after ``expected`` was deleted: offsets skipped are transaction markers
            nxt = expected
            for msg in messages:
                if (msg.topic(), msg.partition()) != where:
                    continue
                offset: int = msg.offset()  # type: ignore[assignment]
                if offset > nxt and nxt < low:
                    self._found(OffsetGap(where[0], where[1], nxt, min(offset, low) - 1, low))
                nxt = max(nxt, offset + 1)

    def _log_start(self, where: tuple[str, int]) -> int:
        """The partition's first offset: as its last fetch reported it, else asked of the broker."""
        tp = TopicPartition(*where)
        low, _ = self.consumer.get_watermark_offsets(tp, cached=True)
        if low < 0:
            try:
                low, _ = self.consumer.get_watermark_offsets(tp, timeout=5)
            except KafkaException:
                log.warning("log start unknown: a retention gap may go unreported", extra={"partition": where})
                return -1
        return low

    def _look_up_starts(self) -> None:
        """The group's committed offsets of newly assigned partitions: where they should go on from."""
        wanted, self._start_unknown = sorted(self._start_unknown), set()
        try:
            committed = committed_offsets(self.consumer, [TopicPartition(t, p) for t, p in wanted], timeout_s=10)
        except KafkaException as exc:
            log.warning("committed offsets unknown: a retention gap may go unreported", extra={"error": str(exc)})
            return
        for tp in committed:
            if tp.offset >= 0:
                self._expected.setdefault((tp.topic, tp.partition), tp.offset)

    def _found(self, gap: OffsetGap) -> None:
        self._pending.append(gap)
        self.total += 1
        RECORDS_LOST.labels(self.service, gap.topic).inc(gap.count)
        log.warning(
            "retention gap: records deleted before they were read",
            extra={
                "partition": f"{gap.topic}:{gap.partition}",
                "first_offset": gap.first,
                "last_offset": gap.last,
                "lost": gap.count,
                "log_start_offset": gap.log_start,
            },
        )
        self.health.set(
            retention_gaps_total=self.total,
            last_retention_gap={"partition": f"{gap.topic}:{gap.partition}", "first": gap.first, "last": gap.last},
        )

    def take(self) -> list[DeadLetter]:
        """The dead letters of the gaps found in this batch, after ``on_gap`` has heard of each."""
        gaps, self._pending = self._pending, []
        if self._on_gap is not None:
            for gap in gaps:
                self._on_gap(gap)
        return [gap.dead_letter(self.service) for gap in gaps]

"""Copy a range of one topic to another, byte for byte: ``eddy replay``.

Keys, values, headers and timestamps are copied as they are: values are not
decoded, so nothing is re-encoded and no schema is registered again, and each
record keeps its timestamp (as CreateTime). Replaying ``S.events`` of a stream
to ``S2.events`` of a sandbox stream (a contract with ``sandbox_of: S``) runs
the full pipeline on past data.

The range is given per bound (see :func:`eddy.history.bounds.parse_bound`) as an
offset, applied in every partition, or as a time. ``start`` is inclusive,
``until`` exclusive. The records are read by :class:`eddy.history.reader.HistoryReader`:
time bounds never use the broker's timestamp index (``offsets_for_times`` is
wrong on the embedded broker): the window of each partition is found by a
binary search over the records' own timestamps, and every copied record is
checked against the range by its own timestamp, so nothing outside it is ever
copied. The search assumes timestamps do not go backwards within a partition;
``scan=True`` reads whole partitions instead and is exact whatever their order.
Records out of order across partitions are exact either way, since each
partition is searched on its own.

The end of each partition is fixed when the replay starts, so a topic still
being written to does not keep a replay running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from eddy.core.settings import Settings
from eddy.history.bounds import Bound, BoundError, check_range
from eddy.history.reader import BATCH, HistoryError, HistoryReader, MissingTopic, ReadTimeout
from eddy.kafka.client import admin_client, ensure_topics, producer_config

PRODUCER_OVERRIDES: dict[str, Any] = {"linger.ms": 20, "enable.idempotence": False, "max.in.flight": 1}
"""The copy's producer: one request in flight per partition keeps the source order even on retries, without the
idempotent producer, which halves the rate on the embedded broker. A retry after a lost acknowledgement can
duplicate a record, which every eddy consumer absorbs (they de-duplicate by event_id)."""

NO_LOWER = -(2**63)
NO_UPPER = 2**63


class ReplayError(ValueError):
    """A replay that cannot run (unknown topic, bad range, broker unreachable): one line, fit for the CLI."""


# -- result -----------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What a replay did: counts per source partition, the windows it read, and how long it took.

    ``windows`` maps each source partition to the offsets ``[first, end)`` read
    from it; ``copied`` counts the records sent from each, ``skipped`` those
    read but outside the time range, ``out_of_order`` the records whose
    timestamp is below the previous one's in the same partition, and
    ``failed`` the records the broker did not acknowledge.
    """

    source: str
    target: str
    scan: bool
    same_partitions: bool
    time_bounded: bool
    windows: dict[int, tuple[int, int]] = field(default_factory=dict)
    copied: dict[int, int] = field(default_factory=dict)
    skipped: int = 0
    out_of_order: dict[int, int] = field(default_factory=dict)
    failed: int = 0
    first_error: str = ""
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def total(self) -> int:
        return sum(self.copied.values())

    @property
    def planned(self) -> int:
        """Records in the windows: what the replay reads at most (copied plus skipped when done)."""
        return sum(end - first for first, end in self.windows.values())

    @property
    def rate(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def out_of_order_total(self) -> int:
        return sum(self.out_of_order.values())


def format_summary(result: ReplayResult) -> str:
    """The summary printed at the end of ``eddy replay``, a few lines.

    Examples
    --------
    >>> r = ReplayResult("a", "b", False, True, True, {0: (0, 5), 1: (2, 4)}, {0: 3, 1: 2}, 1, {0: 1}, elapsed_s=0.5)
    >>> print(format_summary(r))
    copied 5 records from a to b in 0.5 s (10 records/s), partitions kept
      partition 0: 3 copied from offsets 0..5
      partition 1: 2 copied from offsets 2..4
    skipped 1 record outside the time range
    1 timestamp went backwards within a partition (0: 1): the window search assumes they do not, so records
    before or after it may be missing; --scan reads every partition whole and gives the exact answer
    """
    placed = "partitions kept" if result.same_partitions else "partitioned by key"
    lines = [
        f"copied {result.total} records from {result.source} to {result.target} in {result.elapsed_s:.1f} s "
        f"({result.rate:,.0f} records/s), {placed}"
    ]
    if result.interrupted:
        lines[0] = "stopped early: " + lines[0]
    for p, (first, end) in sorted(result.windows.items()):
        lines.append(f"  partition {p}: {result.copied.get(p, 0)} copied from offsets {first}..{end}")
    if result.skipped:
        lines.append(f"skipped {result.skipped} record{'s' if result.skipped != 1 else ''} outside the time range")
    backwards = result.out_of_order_total
    if backwards:
        where = ", ".join(f"{p}: {n}" for p, n in sorted(result.out_of_order.items()) if n)
        line = f"{backwards} timestamp{' went' if backwards == 1 else 's went'} backwards within a partition ({where})"
        if result.time_bounded and not result.scan:
            line += (
                ": the window search assumes they do not, so records\nbefore or after it may be missing; "
                "--scan reads every partition whole and gives the exact answer"
            )
        lines.append(line)
    if result.failed:
        lines.append(f"{result.failed} records were not acknowledged by the broker, first: {result.first_error}")
    return "\n".join(lines)


# -- the replay -------------------------------------------------------------------------------------


def replay(
    settings: Settings,
    source: str,
    target: str,
    start: Bound | None = None,
    until: Bound | None = None,
    *,
    partition: int | None = None,
    scan: bool = False,
    rate: float = 0.0,
    stop: threading.Event | None = None,
    on_progress: Callable[[ReplayResult], None] | None = None,
    progress_interval_s: float = 0.5,
    stall_timeout_s: float = 60.0,
) -> ReplayResult:
    """Copy the records of ``source`` between ``start`` and ``until`` to ``target``.

    Parameters
    ----------
    settings
        Where Kafka is; also the client settings.
    source, target
        Topic names. ``target`` is created when missing, with as many
        partitions as ``source``. When it has at least as many, each record
        goes to the partition number it came from; otherwise the producer
        partitions by key (murmur2, like every eddy producer).
    start, until
        The range: ``start`` inclusive, ``until`` exclusive, each an offset or
        a time (see :func:`eddy.history.bounds.parse_bound`); ``None`` is the beginning / the end
        as it was when the replay started.
    partition
        Copy only this source partition.
    scan
        Read every partition from its beginning and filter by timestamp,
        instead of searching the window: exact even when timestamps go
        backwards within a partition.
    rate
        At most this many records per second; 0 is as fast as possible.
    stop
        Set it to stop early: reading stops, what was sent is flushed, and the
        result has ``interrupted``.
    on_progress
        Called with the result so far about every ``progress_interval_s``.
    stall_timeout_s
        Give up when no record arrives for this long while partitions are unfinished.

    Returns
    -------
    ReplayResult
        The counts; ``failed`` is non-zero when the broker refused records.

    Raises
    ------
    ReplayError
        Unknown topic or partition, an empty range, a negative rate, or a
        broker that does not answer.
    """
    began = time.monotonic()
    stop = stop or threading.Event()
    if source == target:
        raise ReplayError(f"the target topic is the source topic {source!r}")
    if rate < 0:
        raise ReplayError(f"--rate {rate:g} must be 0 (no limit) or positive")
    try:
        check_range(start, until)
    except BoundError as exc:
        raise ReplayError(str(exc)) from exc
    time_bounded = any(b is not None and b.kind == "time" for b in (start, until))
    lo_ms = start.value if start is not None and start.kind == "time" else NO_LOWER
    hi_ms = until.value if until is not None and until.kind == "time" else NO_UPPER
    result = ReplayResult(source, target, scan, False, time_bounded)
    try:
        reader = HistoryReader(
            settings,
            [source],
            start=start,
            until=until,
            partitions=None if partition is None else [partition],
            search_times=not scan,
            stop=stop,
            purpose="replay",
            batch_size=max(1, min(BATCH, int(rate))) if rate else BATCH,
            timeout_s=None,
            stall_timeout_s=stall_timeout_s,
        )
    except MissingTopic as exc:
        raise ReplayError(f"no topic {exc.topic!r}") from exc
    except HistoryError as exc:
        raise ReplayError(str(exc)) from exc
    with reader:
        result.windows = {span.partition: (span.first, span.end) for span in reader.spans}
        if not stop.is_set():
            count = _partition_count(settings, source)
            result.same_partitions = _ensure_target(settings, target, count) >= count
            result.copied = dict.fromkeys(result.windows, 0)
            result.out_of_order = dict.fromkeys(result.windows, 0)
            _copy(settings, reader, result, lo_ms, hi_ms, rate, on_progress, progress_interval_s)
    result.interrupted = stop.is_set()
    result.elapsed_s = time.monotonic() - began
    return result


def _partition_count(settings: Settings, topic: str) -> int:
    found = admin_client(settings).list_topics(timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        raise ReplayError(f"no topic {topic!r}")
    return len(found.partitions)


def _ensure_target(settings: Settings, target: str, source_partitions: int) -> int:
    """Create ``target`` if missing, with the source's partition count; return its partition count."""
    ensure_topics(replace(settings, partitions=max(1, source_partitions)), [target])
    found = admin_client(settings).list_topics(timeout=10).topics.get(target)
    if found is None or found.error is not None:
        raise ReplayError(f"the target topic {target!r} could not be created")
    return len(found.partitions)


def _copy(
    settings: Settings,
    reader: HistoryReader,
    result: ReplayResult,
    lo_ms: int,
    hi_ms: int,
    rate: float,
    on_progress: Callable[[ReplayResult], None] | None,
    progress_interval_s: float,
) -> None:
    """Read every window, send what is in the time range, flush; fills ``result`` as it goes."""
    if not reader.planned:
        return

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        # Only failures are reported (delivery.report.only.error): a callback per record would halve the rate.
        if err is not None:
            result.failed += 1
            result.first_error = result.first_error or err.str()

    overrides = {"on_delivery": delivered, "delivery.report.only.error": True, **PRODUCER_OVERRIDES}
    producer = Producer(producer_config(settings, **overrides))
    copier = _Copier(result, producer, lo_ms, hi_ms, rate, reader.stop)
    last_progress = time.monotonic()
    try:
        for batch in reader.batches():
            copier.take(batch)
            producer.poll(0)
            now = time.monotonic()
            if on_progress is not None and now - last_progress >= progress_interval_s:
                last_progress = now
                result.elapsed_s = now - copier.began
                on_progress(result)
    except ReadTimeout as exc:
        stalled = sorted(span.partition for span in exc.pending)
        raise ReplayError(
            f"{result.source}: partitions {stalled} sent nothing for {reader.stall_timeout_s:.0f} s"
        ) from exc
    finally:
        remaining = producer.flush(30)
        if remaining:
            result.failed += remaining
            result.first_error = result.first_error or f"{remaining} still unacknowledged after 30 s"


class _Copier:
    """The copy's per-record work, apart from its loop: filter, count, pace and produce a read batch."""

    def __init__(
        self,
        result: ReplayResult,
        producer: Producer,
        lo_ms: int,
        hi_ms: int,
        rate: float,
        stop: threading.Event,
    ) -> None:
        self.result = result
        self.producer = producer
        self.last_ts = dict.fromkeys(result.windows, NO_LOWER)
        self.lo_ms, self.hi_ms = lo_ms, hi_ms
        self.rate = rate
        self.stop = stop
        self.sent = 0
        self.began = time.monotonic()

    def take(self, batch: list[Message]) -> None:
        # Locals: this runs for every record, and attribute lookups are a good part of its cost.
        result, last_ts, lo_ms, hi_ms = self.result, self.last_ts, self.lo_ms, self.hi_ms
        copied, out_of_order, target, keep = result.copied, result.out_of_order, result.target, result.same_partitions
        produce = self.producer.produce
        for msg in batch:
            p = msg.partition() or 0
            ts = msg.timestamp()[1]
            if ts < last_ts[p]:
                out_of_order[p] += 1
            last_ts[p] = ts
            if lo_ms <= ts < hi_ms:
                if self.rate and self._paced():
                    return
                # -1 lets the producer partition by key; a timestamp of 0 (a record that had none) means now.
                to, stamp = p if keep else -1, ts if ts > 0 else 0
                try:
                    produce(target, msg.value(), msg.key(), to, timestamp=stamp, headers=msg.headers())
                except BufferError:
                    _produce_when_room(self.producer, target, msg, to, stamp)
                copied[p] += 1
                self.sent += 1
            else:
                result.skipped += 1

    def _paced(self) -> bool:
        """Wait until the next record is due (record n goes out n / rate after the start); True if stopped."""
        wait = self.began + self.sent / self.rate - time.monotonic()
        return wait > 0 and self.stop.wait(wait)


def _produce_when_room(producer: Producer, topic: str, msg: Message, partition: int, ts: int) -> None:
    """Produce once the client's queue, which bounds what is in flight, has room again."""
    while True:
        producer.poll(0.05)
        try:
            producer.produce(topic, msg.value(), msg.key(), partition, timestamp=ts, headers=msg.headers())
            return
        except BufferError:
            continue

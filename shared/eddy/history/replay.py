"""Copy a range of one topic to another, byte for byte: ``eddy replay``.

Keys, values, headers and timestamps are copied as they are: values are not
decoded, so nothing is re-encoded and no schema is registered again, and each
record keeps its timestamp (as CreateTime). Replaying ``S.events`` of a stream
to ``S2.events`` of a sandbox stream (a contract with ``sandbox_of: S``) runs
the full pipeline on past data.

The range is given per bound (see :func:`parse_bound`) as an offset, applied
in every partition, or as a time. ``start`` is inclusive, ``until`` exclusive.
Time bounds never use the broker's timestamp index (``offsets_for_times`` is
wrong on the embedded broker): the window of each partition is found by a
binary search over the records' own timestamps (:func:`first_offset_at`), and
every copied record is checked against the range by its own timestamp, so
nothing outside it is ever copied. The search assumes timestamps do not go
backwards within a partition; ``scan=True`` reads whole partitions instead and
is exact whatever their order. Records out of order across partitions are
exact either way, since each partition is searched on its own.

The end of each partition is the high watermark read at start, taken from a
fetch response (the "latest" offset the broker reports may be wrong), so a
topic still being written to does not keep a replay running.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from eddy.core.settings import Settings
from eddy.kafka.client import admin_client, consumer_config, ensure_topics, producer_config

EPOCH_MS_FROM = 10**11
"""A plain integer bound this large or larger is a time in epoch ms (10**11 ms: 1973-03-03), a smaller one an offset."""

BATCH = 10_000
"""Records asked of the consumer per call: large batches keep the per-call cost off the per-record cost."""

PRODUCER_OVERRIDES: dict[str, Any] = {"linger.ms": 20, "enable.idempotence": False, "max.in.flight": 1}
"""The copy's producer: one request in flight per partition keeps the source order even on retries, without the
idempotent producer, which halves the rate on the embedded broker. A retry after a lost acknowledgement can
duplicate a record, which every eddy consumer absorbs (they de-duplicate by event_id)."""

PROBE_OVERRIDES: dict[str, Any] = {
    "enable.partition.eof": True,
    # Small fetches: the window search reads one record at a time and must not drag megabytes along with each.
    "fetch.wait.max.ms": 10,
    "max.partition.fetch.bytes": 65536,
    "queued.min.messages": 1,
    # The client otherwise waits up to a second before fetching again once its queue is full.
    "fetch.queue.backoff.ms": 0,
}
"""The consumer that reads the watermarks and searches the windows."""

PROBE_TIMEOUT_S = 15.0
"""Longest wait for one record during the window search or the watermark snapshot."""

NO_LOWER = -(2**63)
NO_UPPER = 2**63
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


class ReplayError(ValueError):
    """A replay that cannot run (unknown topic, bad range, broker unreachable): one line, fit for the CLI."""


# -- bounds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """One end of a replay range: an offset (per partition) or a time in epoch milliseconds."""

    kind: Literal["offset", "time"]
    value: int

    def __str__(self) -> str:
        if self.kind == "offset":
            return f"offset {self.value}"
        return f"{_iso(self.value)} ({self.value} ms)"


def parse_bound(text: str, option: str = "bound") -> Bound:
    """Read a ``--from`` / ``--until`` value.

    - ``offset:N`` is offset N; ``ms:N`` is N epoch milliseconds;
    - a plain integer below 10**11 is an offset, one of 10**11 or more is epoch milliseconds
      (every time after 1973-03-03 has at least 12 digits; no partition holds 10**11 records);
    - anything else must be an ISO 8601 time such as ``2026-11-20T10:00:00Z`` or ``2026-11-20``;
      a time without a zone is UTC. Sub-millisecond parts round up, which keeps both bounds exact
      for records, whose timestamps are whole milliseconds.

    Examples
    --------
    >>> parse_bound("42"), parse_bound("1700000000000")
    (Bound(kind='offset', value=42), Bound(kind='time', value=1700000000000))
    >>> parse_bound("2023-11-14T22:13:20Z"), parse_bound("2023-11-14T23:13:20+01:00").value
    (Bound(kind='time', value=1700000000000), 1700000000000)
    >>> parse_bound("ms:5"), parse_bound("offset:100000000000")
    (Bound(kind='time', value=5), Bound(kind='offset', value=100000000000))

    Raises
    ------
    ReplayError
        Naming ``option`` and what is accepted, when ``text`` is none of these.
    """
    s = text.strip()
    prefix, sep, rest = s.partition(":")
    if sep and prefix in ("offset", "ms"):
        if not re.fullmatch(r"\d+", rest.strip()):
            raise ReplayError(f"{option} {text!r}: {prefix}: must be followed by a non-negative integer")
        return Bound("offset" if prefix == "offset" else "time", int(rest))
    if re.fullmatch(r"[+-]?\d+", s):
        number = int(s)
        if number < 0:
            raise ReplayError(f"{option} {text!r}: offsets and times cannot be negative")
        return Bound("time" if number >= EPOCH_MS_FROM else "offset", number)
    try:
        when = datetime.fromisoformat(s)
    except ValueError:
        raise ReplayError(
            f"{option} {text!r} is not an offset, epoch milliseconds (13 digits) or an ISO 8601 time "
            f"like 2026-11-20T10:00:00Z"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # Ceiling division: a record (whole ms) is at or after the exact time exactly when it is at or after its ceiling.
    return Bound("time", -((_EPOCH - when) // _ONE_MS))


def check_range(start: Bound | None, until: Bound | None) -> None:
    """Refuse a range that is empty by construction (``until`` at or before ``start``, of the same kind).

    >>> check_range(Bound("offset", 10), Bound("offset", 5))
    Traceback (most recent call last):
    ...
    eddy.history.replay.ReplayError: --until offset 5 is not after --from offset 10: the range is empty
    """
    if start is not None and until is not None and start.kind == until.kind and until.value <= start.value:
        raise ReplayError(f"--until {until} is not after --from {start}: the range is empty")


# -- finding a partition's window by the records' own timestamps ------------------------------------

RecordAt = Callable[[int], "tuple[int, int] | None"]
"""``record_at(offset)``: (offset, timestamp ms) of the first record at or after ``offset``, None past the end."""


def first_offset_at(record_at: RecordAt, low: int, high: int, time_ms: int) -> int:
    """The first offset in ``[low, high)`` whose record is at or after ``time_ms``; ``high`` when none is.

    A binary search over offsets, reading one record per step, so it is exact
    when timestamps do not go backwards within the partition. Offsets without
    a record (compaction, transaction markers) are allowed: ``record_at`` gives
    the next record there is. The answer is where to start reading; the
    record found there is the first one at or after ``time_ms``.

    Examples
    --------
    >>> times = {0: 10, 1: 20, 2: 20, 5: 30, 6: 40}
    >>> def record_at(offset):
    ...     return next(((o, t) for o, t in sorted(times.items()) if o >= offset), None)
    >>> [first_offset_at(record_at, 0, 7, t) for t in (5, 10, 15, 20, 25, 30, 40, 41)]
    [0, 0, 1, 1, 3, 3, 6, 7]
    """
    lo, hi = low, high
    # Invariant: every record before lo is before time_ms; the first record at or after hi is not (or there is none).
    while lo < hi:
        mid = (lo + hi) // 2
        found = record_at(mid)
        if found is None or found[0] >= hi or found[1] >= time_ms:
            hi = mid
        else:
            lo = found[0] + 1
    return lo


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
        a time (see :func:`parse_bound`); ``None`` is the beginning / the end
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
    check_range(start, until)
    time_bounded = any(b is not None and b.kind == "time" for b in (start, until))
    lo_ms = start.value if start is not None and start.kind == "time" else NO_LOWER
    hi_ms = until.value if until is not None and until.kind == "time" else NO_UPPER

    source_count, windows = _plan(settings, source, partition, start, until, scan, stop)
    result = ReplayResult(source, target, scan, False, time_bounded)
    if not stop.is_set():
        result.same_partitions = _ensure_target(settings, target, source_count) >= source_count
        result.windows = windows
        result.copied = dict.fromkeys(windows, 0)
        result.out_of_order = dict.fromkeys(windows, 0)
        _copy(settings, result, lo_ms, hi_ms, rate, stop, on_progress, progress_interval_s, stall_timeout_s)
    result.interrupted = stop.is_set()
    result.elapsed_s = time.monotonic() - began
    return result


def _plan(
    settings: Settings,
    source: str,
    partition: int | None,
    start: Bound | None,
    until: Bound | None,
    scan: bool,
    stop: threading.Event,
) -> tuple[int, dict[int, tuple[int, int]]]:
    """The source's partition count, and the offsets ``[first, end)`` to read in each partition to copy."""
    probe = Consumer(consumer_config(settings, f"eddy-replay-{uuid.uuid4().hex[:8]}", **PROBE_OVERRIDES))
    try:
        try:
            metadata = probe.list_topics(timeout=10)
        except KafkaException as exc:
            reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
            raise ReplayError(f"cannot reach Kafka at {settings.bootstrap_servers}: {reason}") from exc
        source_count, partitions = _source_partitions(metadata, source, partition)
        windows = {}
        for p, (low, high) in _watermarks(probe, source, partitions, stop).items():
            windows[p] = _window(probe, source, p, low, high, start, until, scan, stop)
    finally:
        probe.close()
    return source_count, windows


def _source_partitions(metadata: Any, topic: str, only: int | None) -> tuple[int, list[int]]:
    """The topic's partition count, and the partitions to copy.

    ``metadata`` lists all topics: asking for one topic by name may auto-create it on some brokers.
    """
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise ReplayError(f"no topic {topic!r}")
    partitions = sorted(found.partitions)
    if only is None:
        return len(partitions), partitions
    if only not in partitions:
        raise ReplayError(f"topic {topic!r} has no partition {only} (it has {len(partitions)})")
    return len(partitions), [only]


def _watermarks(
    consumer: Consumer, topic: str, partitions: list[int], stop: threading.Event
) -> dict[int, tuple[int, int]]:
    """Each partition's first offset and high watermark, as of now.

    Read from a fetch from the beginning: the first record gives the low end,
    the fetch response the high watermark. Neither is asked of the broker's
    ListOffsets, whose "latest" answer is wrong on the embedded broker.
    """
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    first: dict[int, int] = {}
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while len(first) < len(partitions) and not stop.is_set():
        if time.monotonic() > deadline:
            missing = sorted(set(partitions) - set(first))
            raise ReplayError(f"{topic}: no answer from partitions {missing} within {PROBE_TIMEOUT_S:.0f} s")
        for msg in consumer.consume(len(partitions), 0.2):
            p = msg.partition() or 0
            err = msg.error()
            if p in first or (err is not None and err.code() != KafkaError._PARTITION_EOF):
                continue
            first[p] = msg.offset() or 0
            # Stop fetching a partition once its low end is known, so the others get the fetches.
            consumer.pause([TopicPartition(topic, p)])
    out = {}
    for p in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
        low = first.get(p, 0)
        out[p] = (low, max(low, high))
    # A pause outlives the assignment: the window search assigns these partitions again.
    consumer.resume([TopicPartition(topic, p) for p in partitions])
    consumer.unassign()
    return out


def _window(
    consumer: Consumer,
    topic: str,
    partition: int,
    low: int,
    high: int,
    start: Bound | None,
    until: Bound | None,
    scan: bool,
    stop: threading.Event,
) -> tuple[int, int]:
    """The offsets ``[first, end)`` of one partition to read."""

    def record_at(offset: int) -> tuple[int, int] | None:
        if stop.is_set():
            return None
        return _record_at(consumer, topic, partition, offset)

    first, end = low, high
    if start is not None and start.kind == "offset":
        first = min(max(low, start.value), high)
    if until is not None and until.kind == "offset":
        end = max(min(high, until.value), first)
    if scan:
        return first, end
    if start is not None and start.kind == "time":
        first = first_offset_at(record_at, first, end, start.value)
    if until is not None and until.kind == "time":
        end = first_offset_at(record_at, first, end, until.value)
    return first, end


def _record_at(consumer: Consumer, topic: str, partition: int, offset: int) -> tuple[int, int] | None:
    """(offset, timestamp) of the first record at or after ``offset``, None at the end of the partition."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while time.monotonic() < deadline:
        for msg in consumer.consume(1, 0.5):
            err = msg.error()
            if err is None and (msg.offset() or 0) >= offset:
                return msg.offset() or 0, msg.timestamp()[1]
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                return None
            if err is not None and err.fatal():
                raise ReplayError(f"{topic}:{partition}: {err.str()}")
    raise ReplayError(f"{topic}:{partition}: no record at offset {offset} within {PROBE_TIMEOUT_S:.0f} s")


def _ensure_target(settings: Settings, target: str, source_partitions: int) -> int:
    """Create ``target`` if missing, with the source's partition count; return its partition count."""
    ensure_topics(replace(settings, partitions=max(1, source_partitions)), [target])
    found = admin_client(settings).list_topics(timeout=10).topics.get(target)
    if found is None or found.error is not None:
        raise ReplayError(f"the target topic {target!r} could not be created")
    return len(found.partitions)


def _copy(
    settings: Settings,
    result: ReplayResult,
    lo_ms: int,
    hi_ms: int,
    rate: float,
    stop: threading.Event,
    on_progress: Callable[[ReplayResult], None] | None,
    progress_interval_s: float,
    stall_timeout_s: float,
) -> None:
    """Read every window, send what is in the time range, flush; fills ``result`` as it goes."""
    todo = {p for p, (first, end) in result.windows.items() if first < end}
    if not todo:
        return

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        # Only failures are reported (delivery.report.only.error): a callback per record would halve the rate.
        if err is not None:
            result.failed += 1
            result.first_error = result.first_error or err.str()

    overrides = {"on_delivery": delivered, "delivery.report.only.error": True, **PRODUCER_OVERRIDES}
    producer = Producer(producer_config(settings, **overrides))
    group = f"eddy-replay-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(consumer_config(settings, group, **{"enable.partition.eof": True}))
    consumer.assign([TopicPartition(result.source, p, result.windows[p][0]) for p in sorted(todo)])
    copier = _Copier(result, consumer, producer, todo, lo_ms, hi_ms, rate, stop)
    last_record = last_progress = time.monotonic()
    try:
        while todo and not stop.is_set():
            batch = consumer.consume(max(1, min(BATCH, int(rate))) if rate else BATCH, 0.2)
            now = time.monotonic()
            if batch:
                last_record = now
            elif now - last_record > stall_timeout_s:
                raise ReplayError(
                    f"{result.source}: partitions {sorted(todo)} sent nothing for {stall_timeout_s:.0f} s"
                )
            copier.take(batch)
            producer.poll(0)
            if on_progress is not None and now - last_progress >= progress_interval_s:
                last_progress = now
                result.elapsed_s = now - copier.began
                on_progress(result)
    finally:
        consumer.close()
        remaining = producer.flush(30)
        if remaining:
            result.failed += remaining
            result.first_error = result.first_error or f"{remaining} still unacknowledged after 30 s"


class _Copier:
    """The copy's per-record work, apart from its loop: filter, count, pace and produce a consumed batch."""

    def __init__(
        self,
        result: ReplayResult,
        consumer: Consumer,
        producer: Producer,
        todo: set[int],
        lo_ms: int,
        hi_ms: int,
        rate: float,
        stop: threading.Event,
    ) -> None:
        self.result = result
        self.consumer = consumer
        self.producer = producer
        self.todo = todo
        self.ends = {p: end for p, (_, end) in result.windows.items()}
        self.last_ts = dict.fromkeys(todo, NO_LOWER)
        self.lo_ms, self.hi_ms = lo_ms, hi_ms
        self.rate = rate
        self.stop = stop
        self.sent = 0
        self.began = time.monotonic()

    def finish(self, partition: int) -> None:
        """Stop reading a partition: its window is done."""
        self.todo.discard(partition)
        self.consumer.pause([TopicPartition(self.result.source, partition)])

    def take(self, batch: list[Message]) -> None:
        # Locals: this runs for every record, and attribute lookups are a good part of its cost.
        result, todo, ends, last_ts, lo_ms, hi_ms = (
            self.result,
            self.todo,
            self.ends,
            self.last_ts,
            self.lo_ms,
            self.hi_ms,
        )
        copied, out_of_order, target, keep = result.copied, result.out_of_order, result.target, result.same_partitions
        produce = self.producer.produce
        for msg in batch:
            p = msg.partition() or 0
            if p not in todo:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF and (msg.offset() or 0) >= ends[p]:
                    self.finish(p)
                elif err.fatal():
                    raise ReplayError(f"{result.source}:{p}: {err.str()}")
                continue
            offset = msg.offset() or 0
            if offset >= ends[p]:
                self.finish(p)
                continue
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
            if offset + 1 >= ends[p]:
                self.finish(p)

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


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

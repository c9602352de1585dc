"""Read a range of topics' history, up to an end fixed when the read starts: every history command's reader.

``eddy backtest``, ``eddy dataset export``, ``eddy replay``, ``eddy dlq`` and
``eddy dlq replay`` read through :class:`HistoryReader`, and so do the services
where they start from history: validation's reference profiles, retraining's
model events, and learning's look at what a crashed predecessor wrote after
its checkpoint. It joins no consumer group and commits nothing.

The end of each partition is fixed before anything is read
--------------------------------------------------------------------
A first, small fetch of every partition (:func:`fix_spans`) gives its first
offset and its high watermark. From then on the read stops at that end even
while producers keep appending: a reader that waited for "the end" instead
would chase a growing stream and never finish. The high watermark is taken
from the fetch response (``get_watermark_offsets(cached=True)``), raised to the
broker's ListOffsets answer when that is higher: the embedded broker (Tansu)
answers ListOffsets "latest" wrong (the base offset of the last batch plus
one), and Apache Kafka answers both right.

A partition is done when a record at or past its end was delivered, when the
consumer's position reached the end (it moves past transaction markers and
compacted gaps, which are never delivered), or when an end-of-partition event
came at or past the end. An earlier end-of-partition event is not trusted: the
embedded broker sometimes sends one early, and the records after it still
come. A read_committed reader stops at the last stable offset instead: records
of a transaction still open when the read reached them are not part of the
history read. Since neither broker tells a client that offset reliably
(Tansu's ListOffsets is wrong again), it is the end-of-partition event's
offset once nothing more of the partition arrived for :data:`SETTLE_S`.

Time bounds
-----------
``offsets_for_times`` is not used either (the embedded broker answers it from
its write time, in batch offsets). With ``search_times``, a time bound narrows
each partition's span by a binary search over the records' own timestamps
(:func:`first_offset_at`); otherwise the caller filters by time. Records are
never filtered by time here: callers count what they drop, and some bound by
a time inside the value (the backtest's event time).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from eddy.core.settings import Settings
from eddy.history.bounds import Bound
from eddy.kafka.client import AUTHORIZATION_DENIED, BULK_READ, NotAuthorized, consumer_config

Key = tuple[str, int]
"""(topic, partition)."""

BATCH = 10_000
"""Records asked of the consumer per call: large batches keep the per-call cost off the per-record cost."""

FILL_WAIT_S = 0.02
"""``consume()`` waits for a full batch until its timeout: a long one idles at every partial batch (the tail
of a read, a slow fetch), which measured half of a backtest read's time. Short waits loop instead."""

PROGRESS_EVERY_S = 0.5

SETTLE_S = 1.0
"""How long a read_committed partition must stay at an end-of-partition event before its end (the last
stable offset) is taken as reached."""

PROBE_TIMEOUT_S = 15.0
"""Longest wait for the first answer of a partition, or for one record during a time search."""

PROBE_OVERRIDES: dict[str, Any] = {
    "enable.partition.eof": True,
    # Small fetches: the probe needs one answer per partition, the time search one record at a time.
    "fetch.wait.max.ms": 10,
    "max.partition.fetch.bytes": 65536,
    "queued.min.messages": 1,
    # The client otherwise waits up to a second before fetching again once its queue is full.
    "fetch.queue.backoff.ms": 0,
}


class HistoryError(ValueError):
    """A history read that cannot run or finish: one line, fit for the CLI."""


class MissingTopic(HistoryError):
    """A topic the read needs does not exist."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"no topic {topic!r}")
        self.topic = topic


class Unauthorized(HistoryError, NotAuthorized):
    """The cluster's ACLs refuse the read a topic or its consumer group's prefix (docs/operations.md)."""


def _give_up_on(err: KafkaError, key: Key) -> None:
    """Raise for a client error that waiting will not mend: a refusal by the ACLs, or a fatal error.

    Anything else is transient, and the client retries on its own.
    """
    where = f"{key[0]}:{key[1]}: " if key[0] else ""
    if err.code() in AUTHORIZATION_DENIED:
        raise Unauthorized(f"{where}not authorized: {err.str()}")
    if err.fatal():
        raise HistoryError(f"{where}{err.str()}")


class ReadTimeout(HistoryError):
    """The read did not reach every partition's end in time; ``pending`` are the partitions left."""

    def __init__(self, message: str, pending: list[Span]) -> None:
        super().__init__(message)
        self.pending = pending


@dataclass
class Span:
    """One partition of a read: its offsets ``[low, high)`` when the read started, and ``[first, end)`` to read.

    ``end`` is lowered to where a read_committed read stopped (the last stable offset) when that came first.

    >>> Span("t", 0, 0, 10, 4, 10).size, Span("t", 1, 5, 5, 5, 5).size
    (6, 0)
    """

    topic: str
    partition: int
    low: int
    high: int
    first: int
    end: int

    @property
    def key(self) -> Key:
        return self.topic, self.partition

    @property
    def size(self) -> int:
        """Offsets in ``[first, end)``: the records to read at most (fewer where offsets hold no record)."""
        return max(0, self.end - self.first)


def clamp_span(topic: str, partition: int, low: int, high: int, start: int | None, until: int | None) -> Span:
    """The span of a partition holding ``[low, high)`` for the offsets ``[start, until)`` (None: no limit).

    >>> s = clamp_span("t", 0, 10, 20, 5, None); (s.first, s.end)
    (10, 20)
    >>> s = clamp_span("t", 0, 10, 20, 15, 18); (s.first, s.end)
    (15, 18)
    >>> s = clamp_span("t", 0, 10, 20, 25, None); (s.first, s.end, s.size)
    (20, 20, 0)
    """
    first = low if start is None else min(max(low, start), high)
    end = high if until is None else max(min(high, until), first)
    return Span(topic, partition, low, high, first, end)


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


# -- fixing the spans ---------------------------------------------------------------------------------


def fix_spans(
    settings: Settings,
    topics: Sequence[str],
    *,
    start: Bound | None = None,
    until: Bound | None = None,
    positions: Mapping[Key, int] | None = None,
    partitions: Collection[int] | None = None,
    search_times: bool = False,
    skip_missing: bool = False,
    isolation: str | None = None,
    stop: threading.Event | None = None,
) -> list[Span]:
    """Each partition's span to read, with its end fixed now; see the module's docstring.

    Parameters
    ----------
    topics
        The topics read, every partition of each (or only ``partitions``).
    start, until
        ``[start, until)``: offset bounds limit every partition's span; time bounds do so only with
        ``search_times``.
    positions
        Where to start in some partitions (a consumer group's committed offsets, say); a start offset
        bound, if any, applies on top.
    skip_missing
        Leave out topics that do not exist, instead of raising :class:`MissingTopic`.
    isolation
        The consumer's ``isolation.level`` (default: the settings').

    Raises
    ------
    HistoryError
        The broker is unreachable, a partition gave no answer, or (:class:`MissingTopic`) a topic is missing.
    """
    stop = stop or threading.Event()
    overrides = {**PROBE_OVERRIDES, **({"isolation.level": isolation} if isolation else {})}
    probe = Consumer(consumer_config(settings, f"eddy-history-{uuid.uuid4().hex[:8]}", **overrides))
    try:
        keys = _partitions(probe, settings, topics, partitions, skip_missing)
        spans = []
        for (topic, partition), (low, high) in _watermarks(probe, keys, stop).items():
            explicit = (positions or {}).get((topic, partition))
            lower = [o for o in (explicit, _offset(start)) if o is not None and o >= 0]
            span = clamp_span(topic, partition, low, high, max(lower) if lower else None, _offset(until))
            if search_times and not stop.is_set():
                _search_times(probe, span, start, until, stop)
            spans.append(span)
        return spans
    finally:
        probe.close()


def _offset(bound: Bound | None) -> int | None:
    return bound.value if bound is not None and bound.kind == "offset" else None


def _partitions(
    consumer: Consumer, settings: Settings, topics: Sequence[str], only: Collection[int] | None, skip_missing: bool
) -> list[Key]:
    try:
        # All topics, not one by name: asking for one topic by name may auto-create it on some brokers.
        metadata = consumer.list_topics(timeout=10)
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
        raise HistoryError(f"cannot reach Kafka at {settings.bootstrap_servers}: {reason}") from exc
    keys: list[Key] = []
    for topic in dict.fromkeys(topics):
        found = metadata.topics.get(topic)
        if found is not None and found.error is not None and found.error.code() in AUTHORIZATION_DENIED:
            raise Unauthorized(f"{topic}: not authorized: {found.error.str()}")
        if found is None or found.error is not None:
            if skip_missing:
                continue
            raise MissingTopic(topic)
        have = sorted(found.partitions)
        if only is not None:
            absent = sorted(set(only) - set(have))
            if absent:
                raise HistoryError(f"topic {topic!r} has no partition {absent[0]} (it has {len(have)})")
            have = sorted(only)
        keys += [(topic, p) for p in have]
    return keys


def _watermarks(consumer: Consumer, keys: list[Key], stop: threading.Event) -> dict[Key, tuple[int, int]]:
    """Each partition's first offset and high watermark, as of now.

    One small fetch from the beginning: its first record (or end-of-partition event) gives the low end, the
    fetch response the high watermark. The low end is not asked of the broker either: after retention or
    compaction, or before a transaction marker, the first record says where the records start.
    """
    if not keys:
        return {}
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in keys])
    first: dict[Key, int] = {}
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while len(first) < len(keys) and not stop.is_set():
        if time.monotonic() > deadline:
            missing = ", ".join(f"{t}:{p}" for t, p in keys if (t, p) not in first)
            raise HistoryError(f"no answer from partitions {missing} within {PROBE_TIMEOUT_S:.0f} s")
        for msg in consumer.consume(len(keys), 0.2):
            key, err = (msg.topic() or "", msg.partition() or 0), msg.error()
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                _give_up_on(err, key)
                continue
            if key not in first:
                first[key] = msg.offset() or 0
                # Stop fetching a partition once its low end is known, so the others get the fetches.
                consumer.pause([TopicPartition(*key)])
    out = {}
    for key in keys:
        tp = TopicPartition(*key)
        _, fetched = consumer.get_watermark_offsets(tp, cached=True)
        try:
            # Never above the true end (Tansu's is below it, Kafka's right): a floor under a fetch's answer.
            _, queried = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
        except KafkaException:
            queried = -1
        low = first.get(key, 0)
        out[key] = (low, max(low, fetched, queried))
    # A pause outlives the assignment: a time search assigns these partitions again.
    consumer.resume([TopicPartition(*key) for key in keys])
    consumer.unassign()
    return out


def _search_times(
    consumer: Consumer, span: Span, start: Bound | None, until: Bound | None, stop: threading.Event
) -> None:
    """Narrow ``span`` to the records in the time bounds, by binary searches over their timestamps."""

    def record_at(offset: int) -> tuple[int, int] | None:
        if stop.is_set():
            return None
        return _record_at(consumer, span.topic, span.partition, offset)

    if start is not None and start.kind == "time":
        span.first = first_offset_at(record_at, span.first, span.end, start.value)
    if until is not None and until.kind == "time":
        span.end = first_offset_at(record_at, span.first, span.end, until.value)


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
            if err is not None:
                _give_up_on(err, (msg.topic() or "", msg.partition() or 0))
    raise HistoryError(f"{topic}:{partition}: no record at offset {offset} within {PROBE_TIMEOUT_S:.0f} s")


# -- reading ------------------------------------------------------------------------------------------


class HistoryReader:
    """Batches of the records in fixed spans (see :func:`fix_spans`), as a context manager.

    Used as::

        with HistoryReader(settings, ["s.events"], until=Bound("offset", 100)) as reader:
            for batch in reader.batches():
                ...

    Only records inside each partition's ``[first, end)`` are yielded, in the order the client delivers
    them (offset order within a partition). ``read`` counts them, ``planned`` is the spans' total size
    and ``interrupted`` is set when ``stop`` ended the read.

    Parameters
    ----------
    settings, topics, start, until, positions, partitions, search_times, skip_missing, isolation, stop
        As for :func:`fix_spans`; ``stop`` also ends the read between two batches.
    purpose
        Names the client (``eddy-<purpose>-…``) in the broker's logs.
    batch_size
        Records asked of the client per batch, at most.
    timeout_s
        The whole read gives up (:class:`ReadTimeout`) after this long; None: never.
    stall_timeout_s
        Give up (:class:`ReadTimeout`) when no partition moved for this long; None: never.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        *,
        start: Bound | None = None,
        until: Bound | None = None,
        positions: Mapping[Key, int] | None = None,
        partitions: Collection[int] | None = None,
        search_times: bool = False,
        skip_missing: bool = False,
        isolation: str | None = None,
        stop: threading.Event | None = None,
        purpose: str = "read",
        batch_size: int = BATCH,
        timeout_s: float | None = 300.0,
        stall_timeout_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.stop = stop or threading.Event()
        self.purpose = purpose
        self.batch_size = max(1, batch_size)
        self.timeout_s = timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.isolation = isolation or settings.isolation_level
        self.began = time.monotonic()
        self.spans = fix_spans(
            settings,
            topics,
            start=start,
            until=until,
            positions=positions,
            partitions=partitions,
            search_times=search_times,
            skip_missing=skip_missing,
            isolation=self.isolation,
            stop=self.stop,
        )
        self.read = 0
        self.interrupted = False
        self._consumer: Consumer | None = None

    @property
    def planned(self) -> int:
        return sum(span.size for span in self.spans)

    def __enter__(self) -> HistoryReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def batches(self, on_progress: Callable[[int, int], None] | None = None) -> Iterator[list[Message]]:
        """Batches of records until every span is read; ``on_progress(read, planned)`` about twice a second."""
        pending = {span.key: span for span in self.spans if span.size > 0}
        if not pending or self.stop.is_set():
            self.interrupted = self.stop.is_set()
            return
        overrides = {"enable.partition.eof": True, **BULK_READ, "isolation.level": self.isolation}
        group = f"eddy-{self.purpose}-{uuid.uuid4().hex[:8]}"
        consumer = self._consumer = Consumer(consumer_config(self.settings, group, **overrides))
        consumer.assign([TopicPartition(t, p, span.first) for (t, p), span in pending.items()])
        committed = self.isolation == "read_committed"
        # read_committed: partition -> (offset of an end-of-partition event short of the end, when it came).
        short: dict[Key, tuple[int, float]] = {}
        moved = reported = time.monotonic()
        deadline = None if self.timeout_s is None else self.began + self.timeout_s
        while pending:
            if self.stop.is_set():
                self.interrupted = True
                return
            now = time.monotonic()
            if on_progress is not None and now - reported >= PROGRESS_EVERY_S:
                reported = now
                on_progress(self.read, self.planned)
            if deadline is not None and now > deadline:
                raise self._timeout(pending, f"took more than {self.timeout_s:.0f} s")
            if self.stall_timeout_s is not None and now - moved > self.stall_timeout_s:
                raise self._timeout(pending, f"sent nothing for {self.stall_timeout_s:.0f} s")
            messages = consumer.consume(self.batch_size, FILL_WAIT_S)
            batch = [msg for msg in messages if msg.error() is None]
            ended = self._events(messages, pending, short, committed) if len(batch) < len(messages) else []
            if batch:
                moved = now
            # Also without a record: the position moves past transaction markers, which are never delivered.
            batch = self._to_ends(consumer, batch, pending, short, ended)
            for key in [k for k, (_, since) in short.items() if now - since >= SETTLE_S]:
                # The last stable offset: what follows belongs to a transaction still open.
                offset, _ = short.pop(key)
                span = pending.pop(key)
                span.end = max(span.first, min(span.end, offset))
                consumer.pause([TopicPartition(*key)])
            if batch:
                self.read += len(batch)
                yield batch
        if on_progress is not None:
            on_progress(self.read, self.planned)

    def _events(
        self, messages: list[Message], pending: dict[Key, Span], short: dict[Key, tuple[int, float]], committed: bool
    ) -> list[Span]:
        """Act on the client's events: an end-of-partition at or past a span's end finishes it; returns those."""
        ended = []
        for msg in messages:
            err = msg.error()
            if err is None:
                continue
            key = (msg.topic() or "", msg.partition() or 0)
            span = pending.get(key)
            if err.code() == KafkaError._PARTITION_EOF and span is not None:
                offset = msg.offset() or 0
                if offset >= span.end:
                    self._finish(key, pending, short)
                    ended.append(span)
                elif committed:
                    short[key] = (offset, time.monotonic())
            else:
                _give_up_on(err, key)
        return ended

    def _to_ends(
        self,
        consumer: Consumer,
        batch: list[Message],
        pending: dict[Key, Span],
        short: dict[Key, tuple[int, float]],
        ended: list[Span],
    ) -> list[Message]:
        """Finish the partitions whose position reached their end; drop the records past the end of those and of
        the ``ended`` ones (rare: the last batch of a partition)."""
        spans = {**{s.key: s for s in ended}, **pending}
        over: dict[Key, int] = {}
        for tp in consumer.position([TopicPartition(t, p) for t, p in spans]):
            key = (tp.topic, tp.partition)
            span = spans[key]
            if tp.offset < 0:
                continue
            if key not in pending:
                if tp.offset > span.end:
                    over[key] = span.end
                continue
            if key in short and tp.offset > short[key][0]:
                del short[key]  # records after an early end-of-partition event: it was not the end
            if tp.offset >= span.end:
                if tp.offset > span.end:
                    over[key] = span.end
                self._finish(key, pending, short)
        if not over:
            return batch
        return [m for m in batch if (m.offset() or 0) < over.get((m.topic() or "", m.partition() or 0), 2**63)]

    def _finish(self, key: Key, pending: dict[Key, Span], short: dict[Key, tuple[int, float]]) -> None:
        pending.pop(key, None)
        short.pop(key, None)
        assert self._consumer is not None
        # Pausing also drops what the client fetched past the end and did not deliver yet.
        self._consumer.pause([TopicPartition(*key)])

    def _timeout(self, pending: dict[Key, Span], why: str) -> ReadTimeout:
        where = ", ".join(f"{t}:{p} (to offset {s.end})" for (t, p), s in sorted(pending.items()))
        message = f"reading {', '.join(self.topics)} to the end {why}; unfinished: {where}"
        return ReadTimeout(message, list(pending.values()))


def read_to_end(
    settings: Settings,
    topics: Sequence[str],
    timeout_s: float | None = 300.0,
    *,
    start: Mapping[str, int] | None = None,
    purpose: str = "read",
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[list[Message]]:
    """Batches of every record of ``topics`` from ``start`` ("topic:partition" -> offset; default: the
    beginning) to each partition's end as it was when the read started. Missing topics are skipped.

    ``on_progress(read, planned)`` is called about twice a second. ``timeout_s=None`` never gives up:
    for a reader whose caller would be wrong with less than the whole range.

    Raises
    ------
    TimeoutError
        When the read took longer than ``timeout_s``.
    """
    positions = {}
    for name, offset in (start or {}).items():
        topic, _, partition = name.rpartition(":")
        positions[(topic, int(partition))] = offset
    try:
        with HistoryReader(
            settings, topics, positions=positions, skip_missing=True, purpose=purpose, timeout_s=timeout_s
        ) as reader:
            yield from reader.batches(on_progress)
    except ReadTimeout as exc:
        raise TimeoutError(str(exc)) from exc


def start_up_records(
    settings: Settings, topics: Sequence[str], timeout_s: float | None, *, start: Mapping[str, int] | None = None
) -> Iterator[Message]:
    """:func:`read_to_end`'s records one by one, for a service rebuilding the state it starts from.

    Read as purpose ``history``: the consumers then share the probe's group prefix, ``eddy-history-``,
    which the ACL table (``eddy.kafka.acls``) grants the services that read so.
    """
    for batch in read_to_end(settings, topics, timeout_s, start=start, purpose="history"):
        yield from batch

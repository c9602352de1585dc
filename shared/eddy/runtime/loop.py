"""The one consume → decode → handle → produce → confirm → commit loop.

Every data-path service is this loop around a pure handler::

    loop = StreamLoop(service="validation", consumer=..., producer=..., serdes=...,
                      topics=["demo.events"], handler=validate_batch)
    loop.run(stop_event)

Guarantees: input offsets are committed only after every output of the batch
was acknowledged (at-least-once); input that cannot be decoded, and records the
handler rejects or chokes on, go to the stream's DLQ with the reason. No input
can make the loop crash, so no input can make it crash-loop.

With ``transactional=True`` (``EDDY_KAFKA_TRANSACTIONS``) each batch's output and
offsets commit in one Kafka transaction instead, one batch at a time
(``shared/eddy/kafka/transactions.py``); an aborted batch is read and handled again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, TopicPartition

from eddy.avro.serde import SerdeError, SerdeRegistry, encode_key
from eddy.core.limits import MAX_FUTURE_MS
from eddy.core.topics import StreamTopics
from eddy.kafka.client import AUTHORIZATION_DENIED
from eddy.kafka.producer import ConfirmedProducer, Delivery, DeliveryError, Headers
from eddy.kafka.transactions import TransactionAborted, Transactions
from eddy.runtime import observability as obs
from eddy.runtime import tracing
from eddy.runtime.dlq import MAX_RECORD_BYTES, DeadLetter, fit_dead_letter, record_bytes
from eddy.runtime.gaps import GapDetector, OffsetGap, Offsets

log = logging.getLogger(__name__)


# A consumer refused its group or a topic by the cluster's ACLs: the health status it reports meanwhile.
UNAUTHORIZED = "unauthorized"


@dataclass(slots=True)
class InRecord:
    """A decoded input record and where it came from."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: dict[str, Any]
    timestamp_ms: int
    headers: Headers
    raw: bytes = b""

    @property
    def stream(self) -> str:
        return StreamTopics.stream_of(self.topic)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", errors="replace") if v is not None else None
        return None

    def dead(
        self, stage: str, reason: str, exc: BaseException | None = None, message: str = "", **kw: Any
    ) -> DeadLetter:
        """A dead letter for this record, keeping its original bytes."""
        return DeadLetter(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            key=encode_key(self.key),
            value=self.raw,
            headers=self.headers,
            timestamp_ms=self.timestamp_ms,
            stage=stage,
            reason=reason,
            error_class=type(exc).__name__ if exc else "Rejected",
            message=message or (str(exc) if exc else reason),
            **kw,
        )


@dataclass(slots=True)
class OutRecord:
    """A record to produce. ``source`` is dead-lettered if the value cannot be encoded.

    ``raw``, when given, is the value already in the Confluent wire format: it is sent as it is if its
    schema id is the one registered for ``topic``, which saves re-encoding a record passed through unchanged.
    """

    topic: str
    key: str | None
    value: dict[str, Any]
    headers: Headers | None = None
    timestamp_ms: int | None = None
    source: InRecord | None = None
    raw: bytes | None = None


@dataclass
class BatchResult:
    outputs: list[OutRecord] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


Handler = Callable[[Sequence[InRecord]], BatchResult]

# (key, timestamp_ms) of a record sent on unchanged.
Forward = tuple[bytes | None, int]
# Where a topic's records go, and per record a Forward or None.
Routed = tuple[str, list[Forward | None]]


class FastLane(Protocol):
    """Routes the common case of a batch without decoding it (validation's ``FastValidation``).

    ``route`` names the topic the records of ``topic`` are sent on to, and
    answers per value a ``Forward`` for a record it vouches for, or None for a
    record that must be decoded and handled. A systematic sample of the
    forwarded records, one in ``sample_every``, is shown to ``observe`` as
    (value, partition, offset), for profiling.
    """

    sample_every: int

    def route(self, topic: str, values: Sequence[bytes | None]) -> Routed: ...

    def observe(self, topic: str, sample: Sequence[tuple[bytes, int, int]]) -> None: ...


ErrorPolicy = Callable[[Exception, InRecord], DeadLetter]


def dead_letter_on_error(stage: str) -> ErrorPolicy:
    """The default error policy: the record that made the handler raise goes to the DLQ."""

    def policy(exc: Exception, record: InRecord) -> DeadLetter:
        return record.dead(stage, "handler_error", exc, f"{type(exc).__name__}: {exc}")

    return policy


class StreamLoop:
    """Run ``handler`` over micro-batches of ``topics`` until ``stop`` is set.

    ``transactional`` needs a ``producer`` built with a ``transactional.id``: each batch is then one
    transaction, and ``max_in_flight`` does not apply (the next batch starts once this one committed).

    Retention gaps are made visible. Consumers reset to ``earliest`` when their offset is no longer in
    the log, which on its own skips the deleted records silently. The loop knows where each partition
    should go on from (the group's committed offset, the offset ``on_assign`` chose, or just past the
    last record read); when the next record comes from further on and the log now starts past that
    point, the skipped range is an :class:`OffsetGap`. It is logged, counted
    (``eddy_records_lost_total``), written to the DLQ as a ``retention_gap`` dead letter with the
    batch's output (so the offsets past it are committed only once it is acknowledged), and passed to
    ``on_gap`` before the handler sees the batch.
    """

    def __init__(
        self,
        *,
        service: str,
        consumer: Consumer,
        producer: ConfirmedProducer,
        serdes: SerdeRegistry,
        topics: list[str],
        handler: Handler,
        batch_size: int = 500,
        batch_timeout_s: float = 0.05,
        on_error: ErrorPolicy | None = None,
        on_assign: Callable[[Consumer, list[TopicPartition]], None] | None = None,
        on_batch_done: Callable[[Offsets], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        on_gap: Callable[[OffsetGap], None] | None = None,
        health: obs.Health | None = None,
        max_in_flight: int = 8,
        fast_lane: FastLane | None = None,
        transactional: bool = False,
    ) -> None:
        self.service = service
        self.consumer = consumer
        self.producer = producer
        self.serdes = serdes
        self.topics = topics
        self.handler = handler
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.on_error = on_error or dead_letter_on_error(service)
        self._on_assign = on_assign
        self._on_batch_done = on_batch_done or self.commit
        self._on_idle = on_idle
        self.health = health or obs.Health(service)
        self._last_lag_check = 0.0
        self._committed: Offsets = {}
        # Batches produced but not yet acknowledged: their offsets are committed in order once they are.
        self.max_in_flight = max(1, max_in_flight)
        self._in_flight: deque[tuple[Delivery, Offsets]] = deque()
        self._settle_all_next = False
        # Kept from the rebalance callbacks: asking the consumer costs a lock round trip per batch.
        self._assignment: dict[tuple[str, int], TopicPartition] = {}
        self.fast_lane = fast_lane
        # Records the fast lane has sent on so far.
        self.forwarded_total = 0
        self.transactions = Transactions(producer, consumer) if transactional else None
        self.gaps = GapDetector(consumer, service, self.health, on_gap)
        # None unless tracing is on (eddy.runtime.tracing): then a span per batch, linked to its records' spans.
        self.tracer = tracing.tracer_for(service, topics)

    # -- the loop -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        if self.transactions is not None:
            # Before the first fetch: a predecessor's open transaction is aborted before this one reads.
            self.transactions.start()
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)
        self.health.set("ok", topics=self.topics)
        log.info("consuming", extra={"topics": self.topics})
        try:
            while not stop.is_set():
                messages = self.next_batch()
                if messages:
                    self.process(messages)
                else:
                    self._settle()
                    if self._on_idle:
                        self._on_idle()
                self._report_lag()
        finally:
            self.close()

    def next_batch(self) -> list[Message]:
        """Whatever has arrived, up to ``batch_size``; waits up to ``batch_timeout_s`` only when nothing has.

        Under load records pile up while the previous batch is handled, so batches fill by themselves; at
        low rates a record is handled as soon as it arrives instead of waiting for a batch to fill.
        """
        messages = self.consumer.consume(self.batch_size, 0)
        if not messages:
            messages = self.consumer.consume(1, self.batch_timeout_s)
            if messages:
                messages += self.consumer.consume(self.batch_size - 1, 0)
        return messages

    def process(self, messages: Sequence[Message]) -> None:
        """Handle one batch: decode, handle, produce; its offsets are committed once its output is acknowledged.

        Up to ``max_in_flight`` batches may await acknowledgement at once, so the loop does not stall on
        every broker round trip; with ``max_in_flight=1`` this returns only after the commit.
        """
        started = time.perf_counter()
        accepted, offsets = self._accept(messages)
        if self.transactions is not None:
            self.transactions.begin()
        delivery = self.producer.track()
        forwarded = 0
        batch = accepted
        trace = self.tracer.batch(accepted) if self.tracer is not None else None
        if self.fast_lane is not None:
            accepted, forwarded = self._forward(accepted, self.fast_lane, trace)
        records, dead = self._decode(accepted)
        if self.gaps.pending:
            dead = self.gaps.take() + dead
        result = self._handle(records)
        if trace is not None:
            # What the batch writes carries its span's context; dead letters keep their record's own.
            for out in result.outputs:
                out.headers = trace.stamp(out.headers)
        produced = forwarded + self._produce(result.outputs, dead + result.dead)
        if trace is not None:
            trace.end(produced)
        if self.transactions is not None:
            if not self._commit_transaction(self.transactions, delivery, offsets, batch):
                return
        else:
            self._in_flight.append((delivery, offsets))
            quiet, self._settle_all_next = self._settle_all_next, False
            self._settle(wait_for=len(self._in_flight) if quiet else len(self._in_flight) - self.max_in_flight + 1)
        obs.BATCH_SIZE.labels(self.service).observe(len(messages))
        obs.BATCH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        self.health.set(last_batch_at=time.time(), last_batch_size=len(messages), last_batch_out=produced)
        if self.fast_lane is not None:
            self.health.set(forwarded_total=self.forwarded_total)

    @property
    def batches_in_flight(self) -> int:
        """Batches produced whose output is not acknowledged yet (their offsets not yet passed on)."""
        return len(self._in_flight)

    def settle_all_next(self) -> None:
        """After the next batch, wait until every batch in flight is acknowledged: a quiet point where what the
        handler has taken in and what is acknowledged are the same (learning checkpoints there)."""
        self._settle_all_next = True

    def _settle(self, wait_for: int = 0) -> None:
        """Commit, in order, the batches whose output is acknowledged; block until ``wait_for`` of them are."""
        self.producer.poll(0)
        settled = 0
        while self._in_flight:
            delivery, offsets = self._in_flight[0]
            if not delivery.done and settled >= wait_for:
                break
            self.producer.wait(delivery)
            self._in_flight.popleft()
            self._on_batch_done(offsets)
            settled += 1

    def _commit_transaction(
        self, transactions: Transactions, delivery: Delivery, offsets: Offsets, batch: Sequence[Message]
    ) -> bool:
        """Commit the batch's transaction; on an abortable failure abort it, rewind, and answer False."""
        try:
            self.producer.wait(delivery)
            transactions.commit(offsets)
        except (DeliveryError, TransactionAborted) as exc:
            log.warning("transaction aborted; the batch is processed again", extra={"error": str(exc)[:300]})
            transactions.abort()
            self._rewind(batch)
            self.health.set(transactions_aborted=transactions.aborted)
            return False
        self._on_batch_done(offsets)
        self.health.set(transactions_committed=transactions.committed)
        return True

    def _rewind(self, batch: Sequence[Message]) -> None:
        """Seek every partition of ``batch`` back to its first record there, so the batch is read again.

        That is where the last committed transaction left the partition: with one batch at a time, every
        earlier batch committed. Seeking there needs no broker round trip and is right for loops that
        place their consumer themselves (retraining reads from the beginning). A partition no longer assigned (a
        rebalance under way) is skipped: its next owner starts from the committed offsets anyway.
        """
        first: Offsets = {}
        for msg in batch:
            where = (msg.topic() or "", msg.partition() or 0)
            offset = msg.offset() or 0
            if offset < first.get(where, offset + 1):
                first[where] = offset
        for (topic, partition), offset in first.items():
            self.gaps.expect((topic, partition), offset)
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("could not rewind", extra={"partition": f"{topic}:{partition}", "error": str(exc)})

    def commit(self, offsets: Offsets) -> None:
        if self.transactions is not None:
            # Already committed, in the batch's transaction: a plain commit beside it would not be fenced.
            self._committed.update(offsets)
            return
        if offsets:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True)
            self._committed.update(offsets)

    def close(self) -> None:
        if self.transactions is not None:
            try:
                # Stopping mid-batch (an error out of the handler path): its transaction must not linger.
                self.transactions.close()
            finally:
                self.consumer.close()
                log.info("closed")
            return
        try:
            self._settle(wait_for=len(self._in_flight))
            self.producer.confirm(10)
            if self._committed:
                tps = [TopicPartition(t, p, o) for (t, p), o in self._committed.items()]
                self.consumer.commit(offsets=tps, asynchronous=False)
        except Exception:
            log.exception("final flush or commit failed; uncommitted input will be replayed")
        finally:
            self.consumer.close()
            log.info("closed")

    # -- steps ----------------------------------------------------------------------

    def _accept(self, messages: Sequence[Message]) -> tuple[list[Message], Offsets]:
        """The batch's records without consumer errors, and the offsets to commit once it is done.

        The offsets are the consumer's positions: batches are handled in the order they were consumed, so
        after this batch every assigned partition's position is just past its last record handled so far.
        """
        accepted: list[Message] = []
        for msg in messages:
            err = msg.error()
            if err is None:
                accepted.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", extra={"error": err.str()})
                if err.fatal():
                    raise RuntimeError(f"fatal consumer error: {err.str()}")
                if err.code() in AUTHORIZATION_DENIED:
                    # Alive but not doing its work: readiness says so until a batch or an assignment gets through.
                    self.health.set(UNAUTHORIZED, authorization_error=err.str())
        offsets: Offsets = {}
        if accepted and self.health.status == UNAUTHORIZED:
            self.health.set("ok", authorization_error=None)
        if accepted:
            for tp in self.consumer.position(list(self._assignment.values())):
                if tp.offset >= 0:
                    offsets[(tp.topic, tp.partition)] = tp.offset
            self.gaps.find(accepted, offsets)
        counts = Counter(msg.topic() for msg in accepted) if len(self.topics) > 1 else {self.topics[0]: len(accepted)}
        for topic, count in counts.items():
            if topic and count:
                obs.RECORDS_IN.labels(self.service, StreamTopics.stream_of(topic), topic).inc(count)
        return accepted, offsets

    def _forward(
        self, messages: list[Message], lane: FastLane, trace: tracing.TraceSpan | None = None
    ) -> tuple[list[Message], int]:
        """Send on the records ``lane`` vouches for; the others are returned for decode and the handler.

        Forwarded records are produced before the handler's output for the same batch: within one batch,
        records of different event ids may reach the output in a different order than they came.
        """
        by_topic = self._by_topic(messages)
        rest: list[Message] = []
        produce = self.producer.produce
        every = max(1, lane.sample_every)
        forwarded = 0
        # A time Kafka would refuse takes the handler's path, which dead-letters it (and only it).
        not_after_ms = int(time.time() * 1000) + MAX_FUTURE_MS
        for topic, batch in by_topic.items():
            values = [msg.value() for msg in batch]
            out_topic, verdicts = lane.route(topic, values)
            sent: list[Message] = []
            for msg, value, verdict in zip(batch, values, verdicts, strict=True):
                # The output's key is the event id, whatever the input's was: count it against the limit too.
                if (
                    verdict is None
                    or len(value) + len(verdict[0] or b"") > MAX_RECORD_BYTES  # type: ignore[arg-type]
                    or (verdict[1] or 0) > not_after_ms
                ):
                    rest.append(msg)
                    continue
                headers = msg.headers() if trace is None else trace.stamp(msg.headers())  # type: ignore[arg-type]
                produce(out_topic, value, verdict[0], headers, verdict[1])  # type: ignore[arg-type]
                sent.append(msg)
            if not sent:
                continue
            obs.RECORDS_OUT.labels(self.service, StreamTopics.stream_of(out_topic), out_topic).inc(len(sent))
            first = (every - self.forwarded_total % every) % every
            self.forwarded_total += len(sent)
            forwarded += len(sent)
            if first < len(sent):
                sample = [(m.value(), m.partition(), m.offset()) for m in sent[first::every]]
                lane.observe(topic, sample)  # type: ignore[arg-type]
        return rest, forwarded

    def _by_topic(self, messages: Sequence[Message]) -> dict[str, list[Message]]:
        """The batch split by topic (decoding and the fast lane work a topic at a time)."""
        if len(self.topics) == 1:
            return {self.topics[0]: list(messages)}
        by_topic: dict[str, list[Message]] = {}
        for msg in messages:
            by_topic.setdefault(msg.topic() or "", []).append(msg)
        return by_topic

    def _decode(self, messages: Sequence[Message]) -> tuple[list[InRecord], list[DeadLetter]]:
        records: list[InRecord] = []
        dead: list[DeadLetter] = []
        for topic, batch in self._by_topic(messages).items():
            raws = [msg.value() for msg in batch]
            for msg, raw, value in zip(batch, raws, self.serdes.for_topic(topic).decode_many(raws), strict=True):
                raw_headers = msg.headers()
                headers: Headers = (
                    [(str(h[0]), h[1] if isinstance(h[1], bytes) else b"") for h in raw_headers] if raw_headers else []
                )
                key = msg.key()
                record = InRecord(
                    topic,
                    msg.partition(),  # type: ignore[arg-type]
                    msg.offset(),  # type: ignore[arg-type]
                    None if key is None else key.decode("utf-8", "replace"),
                    value,  # type: ignore[arg-type]
                    msg.timestamp()[1],
                    headers,
                    raw or b"",
                )
                if isinstance(value, SerdeError):
                    record.value = {}
                    dead.append(record.dead("deserialize", "undecodable", value))
                else:
                    records.append(record)
        return records, dead

    def _handle(self, records: list[InRecord]) -> BatchResult:
        # With a fast lane the handler runs for every batch, even one the lane forwarded whole, so that its
        # periodic work (validation's profiles) keeps its pace.
        if not records and self.fast_lane is None:
            return BatchResult()
        try:
            return self.handler(records)
        except Exception:
            log.warning("batch handler failed; retrying record by record", exc_info=True)
        # One bad record must not take the batch down with it: isolate it.
        result = BatchResult()
        for record in records:
            try:
                one = self.handler([record])
            except Exception as exc:
                result.dead.append(self.on_error(exc, record))
                continue
            result.outputs.extend(one.outputs)
            result.dead.extend(one.dead)
        return result

    def _produce(self, outputs: list[OutRecord], dead: list[DeadLetter]) -> int:
        counts: dict[str, int] = {}
        serdes: dict[str, Any] = {}
        for out in outputs:
            try:
                serde = serdes.get(out.topic)
                if serde is None:
                    serde = serdes[out.topic] = self.serdes.for_topic(out.topic)
                data = out.raw if out.raw is not None and serde.is_current(out.raw) else serde.encode(out.value)
            except SerdeError as exc:
                if out.source is None:
                    raise
                dead.append(out.source.dead(self.service, "unencodable_output", exc))
                continue
            key = encode_key(out.key)
            size = record_bytes(data, key, out.headers)
            if size > MAX_RECORD_BYTES and out.source is not None:
                message = f"output of {size} bytes (key and headers included) is over the {MAX_RECORD_BYTES}-byte limit"
                dead.append(out.source.dead(self.service, "too_large", message=message))
                continue
            self.producer.produce(out.topic, data, key, out.headers, out.timestamp_ms)
            counts[out.topic] = counts.get(out.topic, 0) + 1
        for topic, count in counts.items():
            obs.RECORDS_OUT.labels(self.service, StreamTopics.stream_of(topic), topic).inc(count)
        for letter in dead:
            value, key, headers = fit_dead_letter(letter)
            self.producer.produce(letter.dlq_topic, value, key, headers, letter.timestamp_ms)
            obs.DEAD_LETTERS.labels(self.service, StreamTopics.stream_of(letter.topic), letter.reason).inc()
            log.info(
                "dead letter",
                extra={
                    "reason": letter.reason,
                    "source_topic": letter.topic,
                    "source_offset": letter.offset,
                    "error": letter.message[:200],
                },
            )
        return len(outputs) + len(dead)

    # -- rebalances and lag -------------------------------------------------------

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned", extra={"partitions": [f"{p.topic}:{p.partition}" for p in partitions]})
        if self.health.status == UNAUTHORIZED:  # the group is granted now
            self.health.set("ok", authorization_error=None)
        self._assignment.update(((p.topic, p.partition), TopicPartition(p.topic, p.partition)) for p in partitions)
        if self._on_assign:
            self._on_assign(consumer, partitions)
        for p in partitions:
            where = (p.topic, p.partition)
            if p.offset >= 0:  # on_assign placed it (learning: its checkpoint's offset)
                self.gaps.expect(where, p.offset)
            elif p.offset == OFFSET_INVALID:  # the group's committed offset, if any: looked up at the first batch
                self.gaps.expect_committed(where)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked", extra={"partitions": [f"{p.topic}:{p.partition}" for p in partitions]})
        # Commit what is acknowledged before the partitions move: the next owner starts after it.
        # (Transactional batches committed their offsets already, and none is in flight between batches.)
        self._settle(wait_for=len(self._in_flight))
        if self._committed and self.transactions is None:
            tps = [TopicPartition(t, p, o) for (t, p), o in self._committed.items()]
            consumer.commit(offsets=tps, asynchronous=False)
        for p in partitions:
            self._committed.pop((p.topic, p.partition), None)
            self._assignment.pop((p.topic, p.partition), None)
            self.gaps.forget((p.topic, p.partition))

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost", extra={"partitions": [f"{p.topic}:{p.partition}" for p in partitions]})
        # Evicted (a pause longer than the session timeout): the group no longer takes this member's commits,
        # and trying would raise out of consume(). What was handled since the last commit is read again.
        self._settle(wait_for=len(self._in_flight))
        for p in partitions:
            self._committed.pop((p.topic, p.partition), None)
            self._assignment.pop((p.topic, p.partition), None)
            self.gaps.forget((p.topic, p.partition))

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_check < 2.0:
            return
        self._last_lag_check = now
        lag: dict[str, int] = {}
        try:
            for tp in self.consumer.position(list(self._assignment.values())):
                if tp.offset < 0:
                    continue
                # Cached watermarks come from fetch responses: right even where ListOffsets is not.
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
                behind = max(0, high - tp.offset) if high >= 0 else 0
                lag[f"{tp.topic}:{tp.partition}"] = behind
                obs.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(behind)
        except Exception:
            log.debug("lag check failed", exc_info=True)
            return
        self.health.set(consumer_lag=lag, consumer_lag_total=sum(lag.values()))

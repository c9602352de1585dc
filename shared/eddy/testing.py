"""Run a service's real stream loop and handlers in memory, without a broker or a schema registry.

The model is bytewax's ``testing`` module: the production code runs unchanged (``eddy.runtime.loop.StreamLoop``
with its decoding, fast lane, error isolation, dead-lettering, encoding and offset commits), and only Kafka
is replaced, by in-memory topics that a :class:`MemoryConsumer` reads and a :class:`MemoryProducer` writes
(every record acknowledged at once). Records are Avro in the Confluent wire format, registered in
confluent-kafka's mock schema registry, so what a handler sees is exactly what it would see from Kafka.

A test feeds values to a topic, runs a service's loop until it has read everything, and gets what it
wrote, per topic, and its dead letters as a named output with their reasons. Topics are shared between
runs, so one service's output is the next one's input: validation then inference is the real pipeline.

Examples
--------
>>> from eddy.contracts.stream import load_contract
>>> from eddy.core.settings import REPO_ROOT
>>> from eddy.services.validation.config import ValidationConfig
>>> from eddy.services.validation.handlers import ValidateBatch
>>> contract = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
>>> topics = InMemoryTopics({"demo": contract})
>>> good = {"event_id": "e1", "event_time_ms": 1_700_000_000_000, "x0": 1.0, "x1": 2.0, "x2": 3.0}
>>> topics.feed("demo.events", [good, {**good, "event_id": "e2", "x0": 99.0}, b"junk"])
>>> run = topics.run("validation", ["demo.events"], ValidateBatch({"demo": contract}, ValidationConfig()))
>>> [v["event_id"] for v in run.outputs["demo.validated"]]
['e1']
>>> sorted(letter.reason for letter in run.dead_letters)
['contract:max', 'undecodable']
>>> run.committed
{('demo.events', 0): 3}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_INVALID, TIMESTAMP_CREATE_TIME, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient

from eddy.avro.serde import SerdeError, SerdeRegistry, encode_key
from eddy.contracts.stream import StreamContract
from eddy.core.settings import Settings
from eddy.kafka.producer import Delivery, Headers
from eddy.runtime.dlq import read_dlq_headers
from eddy.runtime.loop import FastLane, Handler, StreamLoop

__all__ = ["DeadLetterSeen", "InMemoryTopics", "MemoryConsumer", "MemoryMessage", "MemoryProducer", "Run"]

# The one partition of every in-memory topic: ordering is total, as the tests want it.
PARTITION = 0
# A run ends when its input is read; this bounds one that never gets there (a handler feeding its own input).
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class MemoryMessage:
    """One stored record, with the accessors of ``confluent_kafka.Message`` that eddy uses."""

    _topic: str
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _headers: Headers
    _timestamp_ms: int

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return PARTITION

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Headers | None:
        return list(self._headers) or None

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, self._timestamp_ms

    def error(self) -> None:
        return None


class MemoryProducer:
    """What ``StreamLoop`` needs of ``eddy.kafka.producer.ConfirmedProducer``; every record is acknowledged at once."""

    transactional = False
    transactional_id = ""

    def __init__(self, topics: InMemoryTopics) -> None:
        self._topics = topics
        self.last_offsets: dict[tuple[str, int], int] = {}
        self.track_offsets = False

    def track(self) -> Delivery:
        return Delivery()

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        offset = self._topics.append(topic, value, key, headers or [], timestamp_ms or int(time.time() * 1000))
        self.last_offsets[(topic, PARTITION)] = offset + 1

    def poll(self, timeout_s: float = 0.0) -> None:
        return None

    def wait(self, delivery: Delivery, timeout_s: float = 30.0) -> None:
        return None

    def confirm(self, timeout_s: float = 30.0) -> None:
        return None


class MemoryConsumer:
    """What ``StreamLoop`` needs of ``confluent_kafka.Consumer``, over :class:`InMemoryTopics`, in one group.

    It starts at the group's committed offsets (the beginning for a new group) and sets ``drained`` once
    a ``consume`` finds nothing left to read, which is when a harness run stops its loop.
    """

    def __init__(self, topics: InMemoryTopics, group: str, drained: threading.Event) -> None:
        self._topics = topics
        self.group = group
        self.drained = drained
        self.subscribed: list[str] = []
        self._positions: dict[tuple[str, int], int] = {}
        self.closed = False

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[[Any, list[TopicPartition]], None] | None = None,
        on_revoke: Callable[[Any, list[TopicPartition]], None] | None = None,
        on_lost: Callable[[Any, list[TopicPartition]], None] | None = None,
    ) -> None:
        self.subscribed = list(topics)
        committed = self._topics.committed.get(self.group, {})
        self._positions = {(t, PARTITION): committed.get((t, PARTITION), 0) for t in topics}
        if on_assign is not None:
            on_assign(self, [TopicPartition(t, PARTITION, OFFSET_INVALID) for t in topics])

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[MemoryMessage]:
        out: list[MemoryMessage] = []
        for where, position in self._positions.items():
            log = self._topics.log(where[0])
            taken = log[position : position + num_messages - len(out)]
            out.extend(taken)
            self._positions[where] = position + len(taken)
            if len(out) >= num_messages:
                break
        if not out:
            self.drained.set()
        return out

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, self._positions.get((p.topic, p.partition), -1)) for p in partitions
        ]

    def committed(self, partitions: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        mine = self._topics.committed.get(self.group, {})
        return [
            TopicPartition(p.topic, p.partition, mine.get((p.topic, p.partition), OFFSET_INVALID)) for p in partitions
        ]

    def commit(self, offsets: list[TopicPartition] | None = None, asynchronous: bool = True) -> None:
        mine = self._topics.committed.setdefault(self.group, {})
        for tp in offsets or []:
            mine[(tp.topic, tp.partition)] = tp.offset

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int]:
        return 0, len(self._topics.log(partition.topic))

    def seek(self, partition: TopicPartition) -> None:
        self._positions[(partition.topic, partition.partition)] = partition.offset

    def close(self) -> None:
        self.closed = True


@dataclass(frozen=True)
class DeadLetterSeen:
    """A dead letter as a test reads it: why, where from, and the original bytes."""

    topic: str
    reason: str
    stage: str
    message: str
    source_topic: str
    source_offset: int
    value: bytes | None
    headers: dict[str, str]


@dataclass
class Run:
    """What one run of a loop wrote: decoded ``outputs`` per topic, its ``dead_letters``, its ``committed`` offsets."""

    outputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: list[DeadLetterSeen] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    batches: int = 0


class InMemoryTopics:
    """In-memory topics with Avro serdes of ``contracts`` (a mock schema registry), and runs of loops over them."""

    def __init__(self, contracts: dict[str, StreamContract], schemas_dir: Path | None = None) -> None:
        self.contracts = contracts
        # A registry URL of its own: confluent-kafka's mock keeps one store per URL, shared by its clients.
        client = SchemaRegistryClient.new_client({"url": f"mock://eddy-testing-{id(self)}"})
        self.serdes = SerdeRegistry(client, schemas_dir or Settings().schemas_dir, contracts, codec="fast")
        self._logs: dict[str, list[MemoryMessage]] = {}
        self.committed: dict[str, dict[tuple[str, int], int]] = {}
        self._lock = threading.Lock()

    def log(self, topic: str) -> list[MemoryMessage]:
        """Every record of ``topic`` so far."""
        return self._logs.setdefault(topic, [])

    def append(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers, timestamp_ms: int) -> int:
        """Store a record; its offset."""
        with self._lock:
            log = self.log(topic)
            log.append(MemoryMessage(topic, len(log), key, value, list(headers), timestamp_ms))
            return len(log) - 1

    def feed(self, topic: str, values: Iterable[dict[str, Any] | bytes], key_field: str | None = "event_id") -> None:
        """Append ``values`` to ``topic``: dicts encoded with its serde, bytes stored as they are (to test junk)."""
        serde = self.serdes.for_topic(topic)
        for value in values:
            if isinstance(value, bytes):
                self.append(topic, value, None, [], int(time.time() * 1000))
                continue
            key = value.get(key_field) if key_field else None
            stamp = value.get("event_time_ms") or int(time.time() * 1000)
            self.append(topic, serde.encode(value), encode_key(None if key is None else str(key)), [], int(stamp))

    def read(self, topic: str, start: int = 0) -> list[dict[str, Any]]:
        """The decoded values of ``topic`` from offset ``start``."""
        serde = self.serdes.for_topic(topic)
        return [serde.decode(m.value()) for m in self.log(topic)[start:]]

    def run(
        self,
        service: str,
        topics: Sequence[str],
        handler: Handler,
        *,
        fast_lane: FastLane | None = None,
        batch_size: int = 500,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        **options: Any,
    ) -> Run:
        """Run ``service``'s real ``StreamLoop`` over ``topics`` until they are read (or ``timeout_s``).

        The loop reads in the consumer group ``service``, so a second run goes on where the first left off.
        ``options`` go to ``StreamLoop`` (``on_error``, ``on_assign``, ...).
        """
        before = {topic: len(log) for topic, log in self._logs.items()}
        drained = threading.Event()
        consumer = MemoryConsumer(self, service, drained)
        loop = StreamLoop(
            service=service,
            consumer=consumer,  # type: ignore[arg-type]  # what the loop uses of a Consumer
            producer=MemoryProducer(self),  # type: ignore[arg-type]  # ... and of a ConfirmedProducer
            serdes=self.serdes,
            topics=list(topics),
            handler=handler,
            batch_size=batch_size,
            batch_timeout_s=0.0,
            fast_lane=fast_lane,
            **options,
        )
        batches = 0
        real_process = loop.process

        def counted(messages: Sequence[Any]) -> None:
            nonlocal batches
            batches += 1
            real_process(messages)

        loop.process = counted  # type: ignore[method-assign]
        timer = threading.Timer(timeout_s, drained.set)
        timer.start()
        try:
            loop.run(drained)
        finally:
            timer.cancel()
        return self._written_since(before, service, batches)

    def _written_since(self, before: dict[str, int], group: str, batches: int) -> Run:
        run = Run(committed=dict(self.committed.get(group, {})), batches=batches)
        for topic, log in self._logs.items():
            new = log[before.get(topic, 0) :]
            if not new:
                continue
            if topic.endswith("dlq"):
                run.dead_letters.extend(_dead_letter(topic, m) for m in new)
                continue
            try:
                serde = self.serdes.for_topic(topic)
            except KeyError:  # a topic of raw bytes
                run.outputs[topic] = [{"value": m.value()} for m in new]
                continue
            values: list[dict[str, Any]] = []
            for m in new:
                try:
                    values.append(serde.decode(m.value()))
                except SerdeError as exc:
                    raise AssertionError(f"{topic}@{m.offset()} was written but does not decode: {exc}") from exc
            run.outputs[topic] = values
        return run


def _dead_letter(topic: str, message: MemoryMessage) -> DeadLetterSeen:
    meta = read_dlq_headers(message.headers())
    return DeadLetterSeen(
        topic=topic,
        reason=meta.get("reason", ""),
        stage=meta.get("stage", ""),
        message=meta.get("error.message", ""),
        source_topic=meta.get("source.topic", ""),
        source_offset=int(meta.get("source.offset", "-1")),
        value=message.value(),
        headers=meta,
    )

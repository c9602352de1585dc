"""A stream's history for a backtest: its events and labels, read from Kafka up to where they end now.

Events come from ``S.validated`` (what the live pipeline predicted) or
``S.events``; labels from ``S.feedback``. Both are read from the beginning to
the end each partition had when the read reached it (partition EOF, so no
"latest" offset is asked of the broker: the embedded one answers it wrong).
The first record of an event id wins, as it does in inference; the first label
of an event (earliest ``label_time_ms``, then topic order) wins, as in learning.
Events are put in event-time order, ties by event id, so the order never
depends on how partitions interleaved.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message

from shared.backtest.engine import Event, Label
from shared.contracts import StreamContract
from shared.kafka import assign_from, consumer_config
from shared.replay import Bound
from shared.serde import SerdeRegistry
from shared.settings import Settings
from shared.topics import StreamTopics

BATCH = 10_000


@dataclass
class History:
    """What a backtest replays, and where in the topics it came from (for the report and the experiment)."""

    events: list[Event]
    labels: dict[str, Label]
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)  # "topic:partition" -> first, last
    schema_ids: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def read_to_end(settings: Settings, topics: list[str], timeout_s: float = 300.0) -> Iterator[list[Message]]:
    """Batches of every record of ``topics`` up to the end of each partition as the read finds it."""
    config = consumer_config(settings, f"eddy-backtest-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True})
    consumer = Consumer(config)
    try:
        assign_from(consumer, topics)
        reading = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        deadline = time.monotonic() + timeout_s
        while reading and time.monotonic() < deadline:
            batch: list[Message] = []
            for msg in consumer.consume(BATCH, 0.5):
                err, where = msg.error(), (msg.topic(), msg.partition())
                if err is None:
                    if where in reading:
                        batch.append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    reading.discard(where)
            if batch:
                yield batch
    finally:
        consumer.close()


def in_range(offset: int, time_ms: int, start: Bound | None, until: Bound | None) -> bool:
    """Whether a record is inside ``[start, until)``: offsets per partition, times on the event time.

    >>> in_range(5, 1000, Bound("offset", 5), Bound("time", 1001)), in_range(4, 1000, Bound("offset", 5), None)
    (True, False)
    """
    if start is not None and (offset if start.kind == "offset" else time_ms) < start.value:
        return False
    return until is None or (offset if until.kind == "offset" else time_ms) < until.value


def load_history(
    settings: Settings,
    contract: StreamContract,
    serdes: SerdeRegistry,
    source: str = "validated",
    start: Bound | None = None,
    until: Bound | None = None,
) -> History:
    """Read the events of ``S.<source>`` in ``[start, until)`` and every label of ``S.feedback``."""
    topics = StreamTopics(contract.name)
    event_topic = topics.validated if source == "validated" else topics.events
    events: dict[str, Event] = {}
    labels: dict[str, Label] = {}
    spans: dict[str, dict[str, int]] = {}
    skipped = {"undecodable": 0, "out_of_range": 0, "duplicate_event": 0, "duplicate_label": 0}
    id_field, time_field = contract.id_field, contract.time_field
    headers: set[bytes] = set()
    for batch in read_to_end(settings, [event_topic, topics.feedback]):
        by_topic: dict[str, list[Message]] = {}
        for msg in batch:
            by_topic.setdefault(msg.topic() or "", []).append(msg)
        for topic, messages in by_topic.items():
            raws = [m.value() or b"" for m in messages]
            headers.update(raw[1:5] for raw in raws)
            decoded = serdes.for_topic(topic).decode_many(raws)
            # Inline loops: this runs for every record of the history.
            if topic == event_topic:
                for msg, value in zip(messages, decoded, strict=True):
                    if isinstance(value, dict):
                        _take_event(msg, value, id_field, time_field, start, until, events, spans, skipped)
                    else:
                        skipped["undecodable"] += 1
            else:
                for value in decoded:
                    if not isinstance(value, dict):
                        skipped["undecodable"] += 1
                        continue
                    event_id, arrived = str(value["event_id"]), int(value["label_time_ms"])
                    seen = labels.get(event_id)
                    if seen is not None:
                        skipped["duplicate_label"] += 1
                        if seen.arrived_ms <= arrived:
                            continue
                    labels[event_id] = Label(value["label"], arrived)
    schema_ids = {int.from_bytes(h, "big") for h in headers if len(h) == 4}
    ordered = sorted(events.values(), key=lambda e: (e.time_ms, e.event_id))
    return History(ordered, labels, spans, sorted(schema_ids), skipped)


def _take_event(
    msg: Message,
    value: dict[str, Any],
    id_field: str,
    time_field: str,
    start: Bound | None,
    until: Bound | None,
    events: dict[str, Event],
    spans: dict[str, dict[str, int]],
    skipped: dict[str, int],
) -> None:
    offset, event_id, at = msg.offset() or 0, str(value[id_field]), int(value[time_field])
    if not in_range(offset, at, start, until):
        skipped["out_of_range"] += 1
        return
    if event_id in events:
        skipped["duplicate_event"] += 1
        return
    events[event_id] = Event(event_id, at, value)
    span = spans.setdefault(f"{msg.topic()}:{msg.partition()}", {"first": offset, "last": offset})
    span["first"], span["last"] = min(span["first"], offset), max(span["last"], offset)

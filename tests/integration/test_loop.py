"""The shared consumer loop against the real broker: routing, dead letters, commits."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Consumer, TopicPartition
from eddy.avro.serde import SerdeRegistry
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import committed_offsets, consumer_config, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.runtime.dlq import read_dlq_headers
from eddy.runtime.loop import FastLane, StreamLoop
from eddy.services.validation.config import ValidationConfig
from eddy.services.validation.fastlane import NATIVE, FastValidation
from eddy.services.validation.handlers import ValidateBatch

from tests.helpers import create_topics, produce_raw, produce_values, read_topic, serdes_for

pytestmark = pytest.mark.integration

# Validation as the service runs it, with the native fast lane, and without it: every record through Python.
LANES = pytest.mark.parametrize(
    "fast", [pytest.param(True, marks=pytest.mark.skipif(not NATIVE, reason="no native extension")), False]
)


def validation(settings: Settings, serdes: SerdeRegistry, fast: bool) -> tuple[ValidateBatch, FastLane | None]:
    """The handler, and the lane when ``fast``; the reference is kept small so that the lane soon takes over."""
    topics = StreamTopics(settings.streams[0])
    handler = ValidateBatch(
        load_contracts(settings.contracts_dir, settings.streams), ValidationConfig(reference_size=5)
    )
    lane = FastValidation(handler, {topics.events: serdes.schema_id(topics.events)}) if fast else None
    if fast:
        assert lane is not None and lane.streams == [settings.streams[0]]
    return handler, lane


def event(i: int, **kw: object) -> dict[str, object]:
    return {
        "event_id": f"e{i}",
        "event_time_ms": 1_700_000_000_000 + i,
        "x0": 1.0,
        "x1": 2.0,
        "x2": 3.0,
        "region": "east",
        **kw,
    }


@LANES
def test_validation_loop_routes_everything_and_commits(settings: Settings, fast: bool) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    good = [event(i) for i in range(50)]
    bad = [event(100 + i, x1=42.0) for i in range(5)]
    # The first records make the reference profile, which the lane stands aside for: they go first,
    # alone, so that the rest is certain to meet the lane (one big first batch would all go the slow way).
    produce_values(settings, topics.events, good[:10])
    poison = [
        (b"p1", b"\x00\x00\x00"),
        (b"p2", b"not avro at all"),
        (b"p3", b"\x00\x00\x00\xff\xff\x01\x02"),
        (None, None),
    ]

    group = f"it-validation-{stream}"
    serdes = serdes_for(settings)
    handler, lane = validation(settings, serdes, fast)
    loop = StreamLoop(
        service="validation",
        consumer=Consumer(consumer_config(settings, group)),
        producer=ConfirmedProducer(producer_config(settings)),
        serdes=serdes,
        topics=[topics.events],
        handler=handler,
        fast_lane=lane,
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    try:
        read_topic(settings, topics.validated, expect=10, timeout_s=30)
        produce_values(settings, topics.events, good[10:] + bad)
        produce_raw(settings, topics.events, poison)
        validated = read_topic(settings, topics.validated, expect=50, timeout_s=30)
        dlq = read_topic(settings, topics.dlq, expect=9, timeout_s=30, decode=False)
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    assert (loop.forwarded_total > 0) == fast
    assert sorted(v["event_id"] for v in validated) == sorted(e["event_id"] for e in good)
    assert len(dlq) == 9
    reasons = {}
    for msg in dlq:
        meta = read_dlq_headers(msg.headers())
        reasons[meta["reason"]] = reasons.get(meta["reason"], 0) + 1
        assert meta["source.topic"] == topics.events and meta["source.offset"].isdigit()
    assert reasons == {"contract:max": 5, "undecodable": 4}
    raw_values = {msg.value() for msg in dlq}
    assert b"not avro at all" in raw_values  # the original bytes are kept

    # Everything consumed was committed: a new member of the group starts at the end.
    probe = Consumer(consumer_config(settings, group))
    committed = committed_offsets(probe, [TopicPartition(topics.events, p) for p in range(settings.partitions)])
    probe.close()
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == 59


@LANES
def test_loop_stops_between_batches_without_losing_input(settings: Settings, fast: bool) -> None:
    """Stop mid-stream, start again in the same group: every event is validated, none missing."""
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    produce_values(settings, topics.events, [event(i) for i in range(3000)])

    def run_for(seconds: float) -> None:
        serdes = serdes_for(settings)
        handler, lane = validation(settings, serdes, fast)
        loop = StreamLoop(
            service="validation",
            consumer=Consumer(consumer_config(settings, f"it-restart-{stream}")),
            producer=ConfirmedProducer(producer_config(settings)),
            serdes=serdes,
            topics=[topics.events],
            handler=handler,
            batch_size=100,
            fast_lane=lane,
        )
        stop = threading.Event()
        threading.Timer(seconds, stop.set).start()
        loop.run(stop)

    def done() -> bool:
        probe = Consumer(consumer_config(settings, f"it-restart-{stream}"))
        try:
            offsets = committed_offsets(probe, [TopicPartition(topics.events, p) for p in range(settings.partitions)])
        finally:
            probe.close()
        return sum(tp.offset for tp in offsets if tp.offset >= 0) == 3000

    run_for(4.0)
    # The second instance runs until the group has committed everything (a rebalance's length varies by broker
    # and load), at most 60 s.
    for _ in range(12):
        run_for(5.0)
        if done():
            break
    ids = {v["event_id"] for v in read_topic(settings, topics.validated, timeout_s=20, quiet_s=2)}
    assert ids == {f"e{i}" for i in range(3000)}

"""Where Tansu and Apache Kafka differ: eddy's answers, held to Kafka's own where Kafka has the right one.

eddy never asks a broker for "latest" offsets or timestamp lookups, because Tansu gets both wrong
(docs/architecture.md). Its own ways (the end of a partition from a fetch's high watermark, a time
bound by binary search over the records' own timestamps) must agree with Apache Kafka's ListOffsets
and ``offsets_for_times`` on Kafka, or the workaround would be a bug there. On Tansu the broker's
answers are not asserted; eddy's are, against what was produced.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from confluent_kafka import Consumer, TopicPartition
from eddy.core.settings import Settings
from eddy.history.reader import read_to_end
from eddy.history.replay import Bound, replay
from eddy.kafka.client import consumer_config, ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer

pytestmark = pytest.mark.integration

PARTITIONS = 3
T0 = 1_795_168_800_000  # 2026-11-20T10:00:00Z
# Per partition: how many records, and the step between their timestamps (ms).
LAYOUT = {0: (40, 10), 1: (25, 7), 2: (0, 1)}


@pytest.fixture()
def kafka(bootstrap_servers: str) -> Settings:
    return Settings(bootstrap_servers=bootstrap_servers, session_timeout_ms=6000, fetch_wait_max_ms=10)


def topic_with_records(settings: Settings) -> str:
    """A fresh topic holding LAYOUT's records (partition 2 stays empty), timestamps rising from T0."""
    topic = f"semantics-{uuid.uuid4().hex[:8]}"
    ensure_topics(replace(settings, partitions=PARTITIONS), [topic])
    producer = ConfirmedProducer(producer_config(settings))
    for partition, (count, step) in LAYOUT.items():
        for i in range(count):
            producer._producer.produce(topic, b"v", f"k{i}".encode(), partition, timestamp=T0 + step * i)
    producer.confirm()
    return topic


def test_the_end_of_a_partition_is_what_was_produced_and_what_kafka_lists(kafka: Settings, broker_kind: str) -> None:
    topic = topic_with_records(kafka)
    read = sum(len(batch) for batch in read_to_end(kafka, [topic], timeout_s=60))
    assert read == sum(count for count, _ in LAYOUT.values())
    if broker_kind != "kafka":
        return
    # ListOffsets "latest", asked of the broker (not the client's cache): exact on Apache Kafka.
    consumer = Consumer(consumer_config(kafka, f"probe-{uuid.uuid4().hex[:6]}"))
    try:
        for partition, (count, _) in LAYOUT.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
            assert (low, high) == (0, count), partition
    finally:
        consumer.close()


@pytest.mark.parametrize("at_ms", [T0 - 1, T0, T0 + 5, T0 + 70, T0 + 168, T0 + 10_000])
def test_a_time_bound_finds_the_offset_kafka_finds(kafka: Settings, broker_kind: str, at_ms: int) -> None:
    topic = topic_with_records(kafka)
    result = replay(kafka, topic, f"{topic}-copy", Bound("time", at_ms))
    expected = {
        p: next((i for i in range(count) if T0 + step * i >= at_ms), count) for p, (count, step) in LAYOUT.items()
    }
    assert {p: first for p, (first, _) in result.windows.items()} == expected
    assert result.total == sum(count - expected[p] for p, (count, _) in LAYOUT.items())
    if broker_kind != "kafka":
        return
    consumer = Consumer(consumer_config(kafka, f"probe-{uuid.uuid4().hex[:6]}"))
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, at_ms) for p in LAYOUT], timeout=10)
    finally:
        consumer.close()
    # Kafka answers -1 (no record at or after the time) where eddy's window starts at the end.
    assert {tp.partition: (tp.offset if tp.offset >= 0 else LAYOUT[tp.partition][0]) for tp in found} == expected

"""The history reader against the broker: the end of every partition is fixed when the read starts.

A reader started while a producer keeps appending reads exactly the records up to the ends it fixed and
finishes; empty partitions, transaction markers (whose offsets are never delivered) and an open
transaction do not keep it reading; time bounds find their offsets by the records' own timestamps. The
backtest's history, read while its stream grows, holds what was there when it started.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from dataclasses import replace

import pytest
from confluent_kafka import Producer
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.backtest.source import load_history
from eddy.history.bounds import Bound
from eddy.history.reader import SETTLE_S, HistoryReader, read_to_end
from eddy.kafka.client import ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer

from tests.helpers import ValueWriter, create_topics, sample_events, sample_labels, serdes_for

pytestmark = pytest.mark.integration

T0 = 1_795_168_800_000  # 2026-11-20T10:00:00Z
APPEND_LIMIT_S = 30.0
APPEND_LIMIT_RECORDS = 200_000


@pytest.fixture()
def kafka(bootstrap_servers: str) -> Settings:
    return Settings(bootstrap_servers=bootstrap_servers, session_timeout_ms=6000, fetch_wait_max_ms=10)


def make_topic(settings: Settings, partitions: int) -> str:
    topic = f"history-{uuid.uuid4().hex[:8]}"
    ensure_topics(replace(settings, partitions=partitions), [topic])
    return topic


def produce(
    settings: Settings, topic: str, per_partition: dict[int, int], step_ms: dict[int, int] | None = None
) -> None:
    producer = ConfirmedProducer(producer_config(settings))
    for partition, count in per_partition.items():
        step = (step_ms or {}).get(partition, 1)
        for i in range(count):
            producer._producer.produce(topic, b"v", f"k{i}".encode(), partition, timestamp=T0 + step * i)
    producer.confirm()


class Appender(threading.Thread):
    """Appends to partitions of a topic until stopped (bounded in time and count); ``acked`` per partition."""

    def __init__(self, settings: Settings, topic: str, partitions: list[int]) -> None:
        super().__init__(daemon=True)
        self.producer = ConfirmedProducer(producer_config(settings))
        self.topic, self.partitions = topic, partitions
        self.acked: dict[int, int] = defaultdict(int)
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        began, sent = time.monotonic(), 0
        while not self.stop.is_set() and time.monotonic() - began < APPEND_LIMIT_S and sent < APPEND_LIMIT_RECORDS:
            for p in self.partitions:
                for _ in range(100):
                    self.producer._producer.produce(self.topic, b"more", None, p, timestamp=T0)
            self.producer.confirm()
            sent += 100 * len(self.partitions)
            with self.lock:
                for p in self.partitions:
                    self.acked[p] += 100
            time.sleep(0.005)

    def snapshot(self) -> dict[int, int]:
        with self.lock:
            return dict(self.acked)


def test_a_read_started_while_a_producer_appends_stops_at_the_ends_fixed_at_start(kafka: Settings) -> None:
    topic = make_topic(kafka, 3)
    produce(kafka, topic, {0: 2000, 1: 1500})  # partition 2 stays empty
    appender = Appender(kafka, topic, [0, 1])
    appender.start()
    try:
        while sum(appender.snapshot().values()) < 2000:  # appending for real before the read starts
            time.sleep(0.01)
        before = appender.snapshot()
        began = time.monotonic()
        offsets: dict[int, list[int]] = defaultdict(list)
        with HistoryReader(kafka, [topic], timeout_s=60) as reader:
            spans = {s.partition: s for s in reader.spans}
            for batch in reader.batches():
                for msg in batch:
                    offsets[msg.partition() or 0].append(msg.offset() or 0)
        took = time.monotonic() - began
        assert appender.is_alive(), "the producer stopped before the read ended: the test proves nothing"
        after = appender.snapshot()
    finally:
        appender.stop.set()
        appender.join(10)
    assert took < 30
    assert spans[2].size == 0 and not offsets[2]
    for p, initial in {0: 2000, 1: 1500}.items():
        span = spans[p]
        assert (span.low, span.first) == (0, 0)
        # The end is what was there when the read started: at least what was acknowledged before, and exactly read.
        assert initial + before[p] <= span.end <= initial + after[p]
        assert offsets[p] == list(range(span.end)), p
    # The stream went on growing past the ends the read kept to.
    assert any(initial + after[p] > spans[p].end for p, initial in {0: 2000, 1: 1500}.items())
    assert reader.read == reader.planned == spans[0].end + spans[1].end


def test_empty_topics_and_missing_ones(kafka: Settings) -> None:
    empty = make_topic(kafka, 2)
    with HistoryReader(kafka, [empty], timeout_s=30) as reader:
        assert [s.size for s in reader.spans] == [0, 0]
        assert list(reader.batches()) == []
    # read_to_end leaves out topics that do not exist, and reads the others.
    full = make_topic(kafka, 2)
    produce(kafka, full, {0: 3, 1: 4})
    batches = list(read_to_end(kafka, [f"missing-{uuid.uuid4().hex[:6]}", full, empty], timeout_s=30))
    assert sum(len(b) for b in batches) == 7


def test_offset_bounds_and_start_positions(kafka: Settings) -> None:
    topic = make_topic(kafka, 2)
    produce(kafka, topic, {0: 50, 1: 10})
    reader = HistoryReader(
        kafka, [topic], start=Bound("offset", 5), until=Bound("offset", 45), positions={(topic, 0): 20}
    )
    with reader:
        spans = {s.partition: (s.first, s.end) for s in reader.spans}
        read = sorted((m.partition(), m.offset()) for batch in reader.batches() for m in batch)
    assert spans == {0: (20, 45), 1: (5, 10)}
    assert read == [(0, o) for o in range(20, 45)] + [(1, o) for o in range(5, 10)]


def test_time_bounds_are_searched_by_the_records_own_timestamps(kafka: Settings) -> None:
    topic = make_topic(kafka, 2)
    produce(kafka, topic, {0: 50, 1: 50}, {0: 10, 1: 7})
    start, until = Bound("time", T0 + 100), Bound("time", T0 + 200)
    with HistoryReader(kafka, [topic], start=start, until=until, search_times=True) as reader:
        spans = {s.partition: (s.first, s.end) for s in reader.spans}
        stamps = [m.timestamp()[1] for batch in reader.batches() for m in batch]
    # Partition 0: 10 ms apart, [100, 200) is offsets 10..19; partition 1: 7 ms apart, 105..196 is 15..28.
    assert spans == {0: (10, 20), 1: (15, 29)}
    assert len(stamps) == 24 and all(T0 + 100 <= t < T0 + 200 for t in stamps)
    # Without the search the spans are whole: the caller filters by time.
    with HistoryReader(kafka, [topic], start=start, until=until) as whole:
        assert {s.partition: (s.first, s.end) for s in whole.spans} == {0: (0, 50), 1: (0, 50)}


def test_transaction_markers_and_an_open_transaction_do_not_keep_a_read_going(kafka: Settings) -> None:
    topic = make_topic(kafka, 2)  # partition 1 stays empty
    producer = Producer(producer_config(kafka, **{"transactional.id": f"history-{topic}"}))
    producer.init_transactions(30)
    for _ in range(5):
        producer.begin_transaction()
        for i in range(20):
            producer.produce(topic, b"committed", f"k{i}".encode(), 0)
        producer.commit_transaction(30)

    def read(isolation: str) -> tuple[int, float]:
        began = time.monotonic()
        with HistoryReader(kafka, [topic], isolation=isolation, timeout_s=30) as reader:
            count = sum(len(batch) for batch in reader.batches())
        return count, time.monotonic() - began

    # The last offset is a commit marker, never delivered: the read still ends.
    for isolation in ("read_committed", "read_uncommitted"):
        assert read(isolation)[0] == 100, isolation
    producer.begin_transaction()
    for i in range(7):
        producer.produce(topic, b"open", f"o{i}".encode(), 0)
    producer.flush(30)
    try:
        # read_committed stops at the last stable offset, before the open transaction; read_uncommitted reads it.
        count, took = read("read_committed")
        assert count == 100 and took < SETTLE_S + 10
        assert read("read_uncommitted")[0] == 107
    finally:
        producer.commit_transaction(30)
    assert read("read_committed")[0] == 107


def test_a_backtest_history_read_while_the_stream_grows_holds_what_was_there_at_start(settings: Settings) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    ValueWriter(settings, topics.validated).send(sample_events(0, 2000))
    ValueWriter(settings, topics.feedback).send(sample_labels(0, 2000))
    stop = threading.Event()
    written = [2000]

    def keep_writing() -> None:
        events, labels = ValueWriter(settings, topics.validated), ValueWriter(settings, topics.feedback)
        began = time.monotonic()
        while not stop.is_set() and time.monotonic() - began < APPEND_LIMIT_S and written[0] < 100_000:
            n = written[0]
            events.send(sample_events(n, 300))
            labels.send(sample_labels(n, 300))
            written[0] = n + 300

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        while written[0] < 2600:
            time.sleep(0.01)
        at_start = written[0]
        contract = load_contracts(settings.contracts_dir, settings.streams)[stream]
        began = time.monotonic()
        history = load_history(settings, contract, serdes_for(settings))
        took = time.monotonic() - began
        assert writer.is_alive(), "the writer stopped before the read ended: the test proves nothing"
    finally:
        stop.set()
        writer.join(30)
    assert took < 30
    ids = set(history.events.ids)
    assert {f"ev{i}" for i in range(at_start)} <= ids
    assert len(ids) < written[0]
    assert {f"ev{i}" for i in range(at_start)} <= set(history.labels)

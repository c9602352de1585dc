"""A transactional StreamLoop against the real broker: output and offsets commit together, crashes re-process.

On both tiers: committed offsets move only with committed transactions; a batch whose transaction
never committed (a crash, or an abort) is read and handled again, by the restarted instance or by the
same loop after it rewinds; a restarted instance fences the one it replaces. On the Apache Kafka tier
also what only real Kafka keeps: read_committed readers see each output exactly once, while the aborted
records are still in the log for read_uncommitted readers. Tansu shows aborted records to read_committed
readers too, so there that is not asserted. Against an external broker (``EDDY_BOOTSTRAP_SERVERS``)
that is Apache Kafka, set ``EDDY_TEST_REAL_KAFKA=1`` to assert it as well.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import assign_from, committed_offsets, consumer_config, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.kafka.transactions import TransactionFatal
from eddy.runtime.loop import BatchResult, InRecord, Offsets, StreamLoop
from eddy.services.validation.config import ValidationConfig
from eddy.services.validation.handlers import ValidateBatch

from tests.helpers import create_topics, produce_values, serdes_for, wait_until
from tests.records import event

pytestmark = pytest.mark.integration


@pytest.fixture()
def real_kafka(broker_kind: str) -> bool:
    """Whether the broker hides aborted records from read_committed readers (Apache Kafka does; Tansu does not)."""
    return broker_kind == "kafka" or (broker_kind == "external" and os.environ.get("EDDY_TEST_REAL_KAFKA") == "1")


EVENTS = 300
BATCH = 50


class Crash(BaseException):
    """Stands for the process dying: no ``except Exception`` in the loop catches it."""


def ids_in(settings: Settings, topic: str, isolation: str, expect: int, timeout_s: float = 30.0) -> Counter[str]:
    """Event ids in ``topic`` read with ``isolation``: until ``expect`` records, then one quiet second more."""
    serde = serdes_for(settings).for_topic(topic)
    config = consumer_config(settings, f"test-{uuid.uuid4().hex[:8]}", **{"isolation.level": isolation})
    consumer = Consumer(config)
    found: Counter[str] = Counter()
    try:
        assign_from(consumer, [topic])
        deadline = time.monotonic() + timeout_s
        quiet_until = None
        while time.monotonic() < deadline and (quiet_until is None or time.monotonic() < quiet_until):
            messages = [m for m in consumer.consume(1000, 0.2) if m.error() is None]
            found.update(serde.decode(m.value())["event_id"] for m in messages)
            if sum(found.values()) >= expect and quiet_until is None:
                quiet_until = time.monotonic() + 1.0
    finally:
        consumer.close()
    return found


def committed(settings: Settings, group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets over ``topic``'s partitions."""
    probe = Consumer(consumer_config(settings, group))
    try:
        tps = committed_offsets(probe, [TopicPartition(topic, p) for p in range(settings.partitions)])
    finally:
        probe.close()
    return sum(tp.offset for tp in tps if tp.offset >= 0)


class Recording:
    """Validation's handler, recording the event ids each call saw."""

    def __init__(self, settings: Settings) -> None:
        contracts = load_contracts(settings.contracts_dir, settings.streams)
        self.inner = ValidateBatch(contracts, ValidationConfig(reference_size=5))
        self.seen: Counter[str] = Counter()
        self.batches: list[list[str]] = []

    def __call__(self, records: Sequence[InRecord]) -> BatchResult:
        self.batches.append([str(r.value["event_id"]) for r in records])
        self.seen.update(self.batches[-1])
        return self.inner(records)


def transactional_loop(settings: Settings, group: str, tid: str, handler: Recording) -> StreamLoop:
    topics = StreamTopics(settings.streams[0])
    conf = producer_config(settings, **{"transactional.id": tid})
    return StreamLoop(
        service="validation",
        consumer=Consumer(consumer_config(settings, group, **{"isolation.level": "read_committed"})),
        producer=ConfirmedProducer(conf),
        serdes=serdes_for(settings),
        topics=[topics.events],
        handler=handler,
        batch_size=BATCH,
        transactional=True,
    )


def run_until(loop: StreamLoop, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """``loop.run`` in a thread until ``done()``; the thread must end."""
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    try:
        wait_until(done, timeout_s, what="the loop's progress")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()


def test_output_and_offsets_commit_together(settings: Settings) -> None:
    topics = StreamTopics(settings.streams[0])
    create_topics(settings)
    produce_values(settings, topics.events, [event(i) for i in range(EVENTS)])
    group, handler = f"it-txn-{uuid.uuid4().hex[:6]}", Recording(settings)
    loop = transactional_loop(settings, group, f"{group}.a", handler)
    assert loop.transactions is not None

    run_until(loop, lambda: committed(settings, group, topics.events) == EVENTS)

    validated = ids_in(settings, topics.validated, "read_committed", EVENTS)
    assert set(validated) == {f"e{i}" for i in range(EVENTS)}
    # No fault, no abort: each output once, whatever the broker does with aborted records.
    assert max(validated.values()) == 1
    assert loop.transactions.aborted == 0 and loop.transactions.committed >= EVENTS // BATCH


def test_a_crash_before_commit_leaves_the_batch_to_the_restarted_instance(settings: Settings, real_kafka: bool) -> None:
    """The first instance dies between producing a batch and committing it; its successor fences it and redoes it."""
    topics = StreamTopics(settings.streams[0])
    create_topics(settings)
    produce_values(settings, topics.events, [event(i) for i in range(EVENTS)])
    group = f"it-txn-{uuid.uuid4().hex[:6]}"
    tid = f"{group}.instance-0"
    first = Recording(settings)
    zombie = transactional_loop(settings, group, tid, first)
    assert zombie.transactions is not None
    real_commit = zombie.transactions.commit
    done_before: list[Offsets] = []

    def commit_then_die(offsets: Offsets) -> None:
        if zombie.transactions is not None and zombie.transactions.committed == 2:
            zombie.producer.confirm()  # the crashed batch's output is on the broker, in the open transaction
            raise Crash
        real_commit(offsets)
        done_before.append(dict(offsets))

    zombie.transactions.commit = commit_then_die  # type: ignore[method-assign]
    # A dead process leaves its transaction open: no abort on the way out, only the consumer closed.
    zombie.close = zombie.consumer.close  # type: ignore[method-assign]
    with pytest.raises(Crash):
        zombie.run(threading.Event())
    crashed = first.batches[-1]
    assert crashed and len(done_before) == 2
    # Only the committed transactions moved the group's offsets.
    assert committed(settings, group, topics.events) == sum(done_before[-1].values()) < EVENTS
    # The crashed batch's output reached the broker; read_uncommitted readers see it on any broker.
    assert set(crashed) <= set(ids_in(settings, topics.validated, "read_uncommitted", sum(first.seen.values())))

    second = Recording(settings)
    restarted = transactional_loop(settings, group, tid, second)
    run_until(restarted, lambda: committed(settings, group, topics.events) == EVENTS)

    # The successor handled the crashed batch again, from the committed offsets, and nothing committed twice.
    assert set(crashed) <= set(second.seen)
    assert not set(second.seen) & {i for batch in first.batches[:-1] for i in batch}
    read = ids_in(settings, topics.validated, "read_committed", EVENTS)
    assert set(read) == {f"e{i}" for i in range(EVENTS)}
    if real_kafka:
        # Its init_transactions aborted the open transaction: committed readers see each output once.
        assert max(read.values()) == 1
    # The successor's init_transactions fenced the first instance: the zombie can commit nothing any more
    # (here it tries to move the offsets back to the start, with the group metadata of a live member).
    zombie.transactions.consumer = Consumer(consumer_config(settings, group))
    try:
        with pytest.raises(TransactionFatal, match="fenced"):
            real_commit({(topics.events, p): 0 for p in range(settings.partitions)})
    finally:
        zombie.transactions.consumer.close()
    assert committed(settings, group, topics.events) == EVENTS


def test_an_aborted_transaction_is_rewound_and_processed_again(settings: Settings, real_kafka: bool) -> None:
    """An abortable error in send_offsets_to_transaction: the loop aborts, seeks back, and redoes the batch."""
    topics = StreamTopics(settings.streams[0])
    create_topics(settings)
    produce_values(settings, topics.events, [event(i) for i in range(EVENTS)])
    group, handler = f"it-txn-{uuid.uuid4().hex[:6]}", Recording(settings)
    loop = transactional_loop(settings, group, f"{group}.a", handler)
    assert loop.transactions is not None
    real_send = loop.producer.send_offsets_to_transaction
    failed: list[list[str]] = []

    def fail_once(positions: list[Any], metadata: Any, timeout_s: float) -> None:
        if not failed and handler.batches:
            failed.append(handler.batches[-1])
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "injected", txn_requires_abort=True))
        real_send(positions, metadata, timeout_s)

    loop.producer.send_offsets_to_transaction = fail_once  # type: ignore[method-assign]
    run_until(loop, lambda: committed(settings, group, topics.events) == EVENTS)

    assert failed and loop.transactions.aborted == 1
    # The aborted batch was handled twice, the rest once.
    assert all(handler.seen[i] == 2 for i in failed[0])
    assert sum(handler.seen.values()) == EVENTS + len(failed[0])
    read = ids_in(settings, topics.validated, "read_committed", EVENTS)
    assert set(read) == {f"e{i}" for i in range(EVENTS)}
    if real_kafka:
        assert max(read.values()) == 1
        # The aborted batch's first outputs are still in the log: only the isolation level hides them.
        everything = ids_in(settings, topics.validated, "read_uncommitted", EVENTS + len(failed[0]))
        assert all(everything[i] == 2 for i in failed[0]) and sum(everything.values()) == EVENTS + len(failed[0])

"""The transactional mode's pure pieces: ids, error outcomes, the call wrapper, the settings, and the loop's rewind."""

from __future__ import annotations

import threading
import time
from typing import Any
from unittest.mock import MagicMock

import eddy.kafka.transactions as transactions_module
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from eddy.core.settings import Settings, SettingsError
from eddy.kafka.client import producer_config
from eddy.kafka.producer import ConfirmedProducer, Delivery, DeliveryError
from eddy.kafka.transactions import (
    TransactionAborted,
    TransactionFatal,
    Transactions,
    classify,
    transactional_id,
)
from eddy.runtime.loop import BatchResult, InRecord, OutRecord, StreamLoop
from eddy.runtime.service import NOT_TRANSACTIONAL, ServiceContext


def failure(code: int, **flags: bool) -> KafkaException:
    return KafkaException(KafkaError(code, "test", **flags))


class FakeProducer:
    """Records the transaction calls; ``failures`` maps a call's name to the exceptions its next calls raise."""

    transactional = True
    transactional_id = "test.instance.digest"

    def __init__(self, **failures: list[KafkaException]) -> None:
        self.calls: list[str] = []
        self.failures = failures
        self.produced: list[tuple[str, bytes | None]] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        pending = self.failures.get(name)
        if pending:
            raise pending.pop(0)

    def init_transactions(self, _timeout_s: float) -> None:
        self._call("init")

    def begin_transaction(self) -> None:
        self._call("begin")

    def send_offsets_to_transaction(self, _positions: list[Any], _metadata: Any, _timeout_s: float) -> None:
        self._call("send_offsets")

    def commit_transaction(self, _timeout_s: float) -> None:
        self._call("commit")

    def abort_transaction(self, _timeout_s: float) -> None:
        self._call("abort")

    # What the loop uses of a ConfirmedProducer besides the transaction calls.
    def track(self) -> Delivery:
        return Delivery()

    def produce(self, topic: str, value: bytes | None, *_args: Any) -> None:
        self.produced.append((topic, value))

    def wait(self, _delivery: Delivery) -> None:
        self._call("wait")

    def poll(self, _timeout_s: float = 0.0) -> None:
        pass


def transactions(producer: FakeProducer) -> Transactions:
    return Transactions(producer, MagicMock(), timeout_s=5.0)  # type: ignore[arg-type]


def test_the_id_is_stable_per_instance_and_input() -> None:
    a = transactional_id("eddy-inference", "pod-0", ["s.validated", "t.validated"])
    assert a == transactional_id("eddy-inference", "pod-0", ["t.validated", "s.validated"])
    assert a.startswith("eddy-inference.pod-0.")
    assert a != transactional_id("eddy-inference", "pod-1", ["s.validated", "t.validated"])
    assert a != transactional_id("eddy-inference", "pod-0", ["s.validated"])


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (KafkaError(KafkaError._TIMED_OUT, retriable=True), "retry"),
        (KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, retriable=True), "retry"),
        (KafkaError(KafkaError._TRANSPORT, txn_requires_abort=True), "abort"),
        (KafkaError(KafkaError.PRODUCER_FENCED, txn_requires_abort=True), "fatal"),
        (KafkaError(KafkaError.INVALID_PRODUCER_EPOCH), "fatal"),
        (KafkaError(KafkaError._FENCED, txn_requires_abort=True), "fatal"),  # what Tansu answers a zombie
        (KafkaError(KafkaError._STATE, fatal=True), "fatal"),
        (KafkaError(KafkaError._STATE), "fatal"),  # unexplained: a restart is the safe way out
    ],
)
def test_classify(error: KafkaError, outcome: str) -> None:
    assert classify(error) == outcome


def test_a_batch_commits_offsets_then_the_transaction() -> None:
    producer = FakeProducer()
    txn = transactions(producer)
    txn.begin()
    txn.commit({("s.events", 0): 7})
    assert producer.calls == ["init", "begin", "send_offsets", "commit"]
    assert (txn.committed, txn.open) == (1, False)


def test_retriable_errors_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions_module, "RETRY_BACKOFF_S", 0.0)
    producer = FakeProducer(commit=[failure(KafkaError._TIMED_OUT, retriable=True)] * 2)
    txn = transactions(producer)
    txn.begin()
    txn.commit({})
    assert producer.calls.count("commit") == 3 and txn.committed == 1


def test_retries_that_run_out_abort_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transactions_module, "RETRY_BACKOFF_S", 0.0)
    producer = FakeProducer(commit=[failure(KafkaError._TIMED_OUT, retriable=True)] * transactions_module.MAX_ATTEMPTS)
    txn = transactions(producer)
    txn.begin()
    with pytest.raises(TransactionAborted, match="gave up after"):
        txn.commit({})
    assert producer.calls.count("commit") == transactions_module.MAX_ATTEMPTS
    txn.abort()
    assert (txn.aborted, txn.open, txn.failed) == (1, False, False)


def test_an_abortable_error_asks_for_an_abort() -> None:
    producer = FakeProducer(send_offsets=[failure(KafkaError._TRANSPORT, txn_requires_abort=True)])
    txn = transactions(producer)
    txn.begin()
    with pytest.raises(TransactionAborted):
        txn.commit({("s.events", 0): 1})
    assert "commit" not in producer.calls and txn.open


def test_fenced_is_fatal_and_nothing_more_is_tried() -> None:
    producer = FakeProducer(send_offsets=[failure(KafkaError.PRODUCER_FENCED, txn_requires_abort=True)])
    txn = transactions(producer)
    txn.begin()
    with pytest.raises(TransactionFatal, match="EDDY_INSTANCE_ID"):
        txn.commit({("s.events", 0): 1})
    assert txn.failed
    txn.close()  # a failed producer is not asked to abort
    assert "abort" not in producer.calls


def test_a_call_that_never_returns_gives_the_producer_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka's send_offsets_to_transaction can outstay its timeout for good (issues 5456, 5511)."""
    monkeypatch.setattr(transactions_module, "STUCK_GRACE_S", 0.2)
    stuck = threading.Event()
    producer = FakeProducer()
    producer.send_offsets_to_transaction = lambda *_args: stuck.wait()  # type: ignore[assignment, method-assign]
    txn = Transactions(producer, MagicMock(), timeout_s=0.1)  # type: ignore[arg-type]
    txn.begin()
    began = time.monotonic()
    with pytest.raises(TransactionFatal, match="did not return"):
        txn.commit({("s.events", 0): 1})
    assert time.monotonic() - began < 2.0 and txn.failed
    txn.close()  # the stuck producer is not asked to abort
    assert "abort" not in producer.calls
    stuck.set()


def test_close_aborts_an_open_transaction() -> None:
    producer = FakeProducer()
    txn = transactions(producer)
    txn.begin()
    txn.close()
    assert producer.calls[-1] == "abort" and not txn.open


def test_a_failing_init_is_fatal() -> None:
    producer = FakeProducer(init=[failure(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)])
    with pytest.raises(TransactionFatal):
        transactions(producer).start()


def test_a_producer_without_a_transactional_id_is_refused() -> None:
    producer = FakeProducer()
    producer.transactional = False
    with pytest.raises(ValueError, match=r"transactional\.id"):
        transactions(producer)


# -- settings ------------------------------------------------------------------------------------------


def test_settings_are_off_by_default_and_read_from_env() -> None:
    assert not Settings().kafka_transactions and Settings().isolation_level == "read_uncommitted"
    on = Settings.from_env({"EDDY_KAFKA_TRANSACTIONS": "true", "EDDY_INSTANCE_ID": "pod-3"})
    assert on.kafka_transactions and on.isolation_level == "read_committed" and on.instance_id == "pod-3"
    for word, value in (("1", True), ("yes", True), ("FALSE", False), ("off", False)):
        assert Settings.from_env({"EDDY_KAFKA_TRANSACTIONS": word}).kafka_transactions is value
    forced = Settings.from_env({"EDDY_KAFKA_TRANSACTIONS": "true", "EDDY_KAFKA_ISOLATION_LEVEL": "Read_Uncommitted"})
    assert forced.isolation_level == "read_uncommitted"
    assert Settings.from_env({"EDDY_KAFKA_ISOLATION_LEVEL": "read_committed"}).isolation_level == "read_committed"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="kafka_transactions"):
        Settings.from_env({"EDDY_KAFKA_TRANSACTIONS": "maybe"})
    with pytest.raises(SettingsError, match="EDDY_KAFKA_ISOLATION_LEVEL"):
        Settings(kafka_isolation_level="serializable")


def test_children_get_the_transaction_settings() -> None:
    parent = Settings(kafka_transactions=True, kafka_isolation_level="read_committed")
    child = Settings.from_env(parent.kafka_env())
    assert (child.kafka_transactions, child.kafka_isolation_level) == (True, "read_committed")
    assert parent.shown()["EDDY_KAFKA_TRANSACTIONS"] == "true"
    assert Settings.from_env(Settings().kafka_env()).kafka_transactions is False


# -- the loop ------------------------------------------------------------------------------------------


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def value(self) -> bytes:
        return f"v{self._where[1]}-{self._where[2]}".encode()

    def key(self) -> bytes:
        return b"k"

    def headers(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


def loop_with(producer: FakeProducer, consumer: MagicMock, transactional: bool = True) -> StreamLoop:
    serdes = MagicMock()
    serdes.for_topic.return_value.decode_many = lambda raws: [{"raw": r} for r in raws]
    serdes.for_topic.return_value.encode = lambda value: b"out"

    def handler(records: list[InRecord]) -> BatchResult:
        return BatchResult(outputs=[OutRecord("s.validated", "k", r.value, source=r) for r in records])

    loop = StreamLoop(
        service="test",
        consumer=consumer,
        producer=producer,  # type: ignore[arg-type]
        serdes=serdes,
        topics=["s.events"],
        handler=handler,  # type: ignore[arg-type]
        transactional=transactional,
    )
    loop._assigned(consumer, [TopicPartition("s.events", 0), TopicPartition("s.events", 1)])
    return loop


def consumer_at(positions: dict[int, int]) -> MagicMock:
    consumer = MagicMock()
    consumer.position.side_effect = lambda tps: [
        TopicPartition(tp.topic, tp.partition, positions[tp.partition]) for tp in tps
    ]
    return consumer


BATCH = [FakeMessage("s.events", 0, 5), FakeMessage("s.events", 1, 9), FakeMessage("s.events", 0, 6)]


def test_a_committed_batch_does_not_commit_offsets_beside_its_transaction() -> None:
    producer, consumer = FakeProducer(), consumer_at({0: 7, 1: 10})
    loop = loop_with(producer, consumer)
    loop.process(BATCH)  # type: ignore[arg-type]
    assert producer.calls == ["init", "begin", "wait", "send_offsets", "commit"]
    assert [topic for topic, _ in producer.produced] == ["s.validated"] * 3
    consumer.commit.assert_not_called()
    consumer.seek.assert_not_called()
    assert loop._committed == {("s.events", 0): 7, ("s.events", 1): 10}
    loop._revoked(consumer, [TopicPartition("s.events", 0)])
    consumer.commit.assert_not_called()


def test_an_aborted_batch_rewinds_each_partition_to_its_first_record() -> None:
    producer = FakeProducer(send_offsets=[failure(KafkaError._TRANSPORT, txn_requires_abort=True)])
    consumer = consumer_at({0: 7, 1: 10})
    loop = loop_with(producer, consumer)
    loop.process(BATCH)  # type: ignore[arg-type]
    assert producer.calls == ["init", "begin", "wait", "send_offsets", "abort"]
    seeks = {(tp.topic, tp.partition, tp.offset) for (tp,), _ in consumer.seek.call_args_list}
    assert seeks == {("s.events", 0, 5), ("s.events", 1, 9)}
    assert loop._committed == {} and loop.transactions is not None and loop.transactions.aborted == 1
    consumer.commit.assert_not_called()


def test_an_undelivered_output_aborts_the_batch_too() -> None:
    producer = FakeProducer()

    def undelivered(_delivery: Delivery) -> None:
        raise DeliveryError("1 records not delivered")

    producer.wait = undelivered  # type: ignore[method-assign]
    consumer = consumer_at({0: 7, 1: 10})
    loop_with(producer, consumer).process(BATCH)  # type: ignore[arg-type]
    assert producer.calls == ["init", "begin", "abort"]
    assert consumer.seek.call_count == 2


def test_a_fenced_producer_ends_the_loop() -> None:
    producer = FakeProducer(send_offsets=[failure(KafkaError.PRODUCER_FENCED)])
    loop = loop_with(producer, consumer_at({0: 7, 1: 10}))
    with pytest.raises(TransactionFatal):
        loop.process(BATCH)  # type: ignore[arg-type]
    loop.close()  # what run() does on the way out: no abort asked of a fenced producer
    assert "abort" not in producer.calls


def test_off_by_default_the_loop_commits_as_before() -> None:
    producer, consumer = FakeProducer(), consumer_at({0: 7, 1: 10})
    loop = loop_with(producer, consumer, transactional=False)
    loop.process(BATCH)  # type: ignore[arg-type]
    assert loop.transactions is None and producer.calls == ["wait"]
    consumer.commit.assert_called_once()


# -- the composition root --------------------------------------------------------------------------------


def context(name: str, **settings: Any) -> ServiceContext:
    # No broker is needed: building clients does not connect.
    base = Settings(bootstrap_servers="127.0.0.1:1", group_prefix="eddy-t", instance_id="pod-0", **settings)
    producer = ConfirmedProducer(producer_config(base))
    return ServiceContext(name, base, {}, MagicMock(), producer, MagicMock(), MagicMock(), 0)


def test_services_get_a_transactional_loop_only_when_asked() -> None:
    handler = MagicMock()
    off = context("inference")
    plain = off.stream_loop(["s.validated"], handler)
    assert plain.transactions is None and plain.producer is off.producer
    ctx = context("inference", kafka_transactions=True)
    loop = ctx.stream_loop(["s.validated"], handler)
    assert loop.transactions is not None and loop.producer is not ctx.producer
    assert loop.producer.transactional_id == transactional_id("eddy-t-inference", "pod-0", ["s.validated"])
    # Delivered offsets land in the service producer's table.
    assert loop.producer.last_offsets is ctx.producer.last_offsets
    plain.consumer.close()
    loop.consumer.close()


def test_learning_stays_out_of_transactions() -> None:
    ctx = context("learning", kafka_transactions=True)
    loop = ctx.stream_loop(["s.predictions"], MagicMock())
    assert loop.transactions is None and loop.producer is ctx.producer
    assert "learning" in NOT_TRANSACTIONAL
    loop.consumer.close()


def test_every_consumer_reads_at_the_configured_isolation_level() -> None:
    from eddy.kafka.client import consumer_config

    assert consumer_config(Settings(), "g")["isolation.level"] == "read_uncommitted"
    on = Settings(kafka_transactions=True)
    assert consumer_config(on, "g")["isolation.level"] == "read_committed"
    assert consumer_config(on, "g", **{"isolation.level": "read_uncommitted"})["isolation.level"] == "read_uncommitted"

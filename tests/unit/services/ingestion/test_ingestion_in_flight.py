"""The gateway produces an event once even when a retry arrives while the first try is still unacknowledged."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError
from confluent_kafka.schema_registry import SchemaRegistryClient
from eddy.avro.serde import SerdeRegistry
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.runtime.observability import Health
from eddy.services.ingestion.app import Gateway

from tests.records import demo_contract, event

SETTINGS = Settings()


class HeldProducer:
    """A producer whose acknowledgements arrive only when the test releases them."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.held: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes, **kw: Any) -> None:
        self.sent.append(key)
        self.held.append(kw["on_delivery"])

    def release(self, err: KafkaError | None = None) -> None:
        for acknowledge in self.held:
            acknowledge(err, None)
        self.held.clear()

    def __len__(self) -> int:
        return len(self.held)


def gateway(producer: HeldProducer, url: str) -> Gateway:
    client = SchemaRegistryClient.new_client({"url": url})
    serdes = SerdeRegistry(client, SETTINGS.schemas_dir, load_contracts(SETTINGS.contracts_dir))
    return Gateway(load_contracts(SETTINGS.contracts_dir), serdes, producer, Health("ingestion"))  # type: ignore[arg-type]


async def tries(gate: Gateway, producer: HeldProducer, err: KafkaError | None, n: int = 3) -> list[Any]:
    records = [(i, event(i)) for i in range(4)]
    contract = demo_contract()
    pending = [asyncio.ensure_future(gate._produce(contract, "events", records, 0)) for _ in range(n)]
    for _ in range(5):  # every try is now waiting for an acknowledgement
        await asyncio.sleep(0)
    assert not any(p.done() for p in pending)
    producer.release(err)
    return await asyncio.gather(*pending)


def test_tries_in_flight_together_produce_each_event_once() -> None:
    producer = HeldProducer()
    gate = gateway(producer, "mock://in-flight")
    first, *others = asyncio.run(tries(gate, producer, None))
    assert sorted(producer.sent) == [b"e0", b"e1", b"e2", b"e3"]
    assert first == ({}, set())
    assert others == [({}, {0, 1, 2, 3})] * 2  # answered "duplicate" once the first try was acknowledged
    assert gate.in_flight == {} and all(gate.dedup.seen(f"e{i}", 0.0) for i in range(4))


def test_a_failed_first_try_fails_the_tries_that_waited_for_it_and_a_retry_produces_again() -> None:
    producer = HeldProducer()
    gate = gateway(producer, "mock://in-flight-failed")
    answers = asyncio.run(tries(gate, producer, KafkaError(KafkaError._MSG_TIMED_OUT)))
    assert [getattr(a, "status", None) for a in answers] == [503, 503, 503]
    assert gate.in_flight == {} and not gate.dedup.seen("e0", 0.0)
    again = asyncio.run(tries(gate, producer, None, n=1))
    assert again == [({}, set())] and len(producer.sent) == 8

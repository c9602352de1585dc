"""A model grown past Kafka's record limit is not produced (that would stop the service); it is said instead."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from eddy.ml.models import ModelState
from eddy.runtime.dlq import MAX_RECORD_BYTES
from eddy.runtime.observability import Health
from eddy.services.learning.handlers import LearnerState
from eddy.services.learning.runner import LearningService
from prometheus_client import REGISTRY

from tests.keys import TEST_KEYS
from tests.records import demo_contract


class Producer:
    def __init__(self) -> None:
        self.produced: list[tuple[str, int]] = []

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        self.produced.append((topic, len(value)))

    def confirm(self) -> None:
        pass


def service(encoded_size: int) -> tuple[LearningService, Producer, Health]:
    contract = demo_contract()
    producer, health = Producer(), Health("learning")
    serde = SimpleNamespace(encode=lambda record: b"x" * encoded_size)
    ctx = SimpleNamespace(serdes=SimpleNamespace(for_topic=lambda topic: serde), keys=TEST_KEYS,
                          producer=producer, health=health)  # fmt: skip
    learner: Any = SimpleNamespace(state=LearnerState(ModelState.fresh("demo", contract.champion, 1)), champion=True)
    learner.state.model.learned_count = 10
    runner = object.__new__(LearningService)
    runner.ctx, runner.code_version, runner._published = ctx, "test", {}
    runner.learners = {("demo", contract.champion.name, None): learner}
    return runner, producer, health


def too_large() -> float:
    return REGISTRY.get_sample_value("eddy_snapshots_too_large_total", {"stream": "demo", "model": "default"}) or 0.0


def test_a_snapshot_over_the_record_limit_is_not_produced_and_is_reported() -> None:
    before = too_large()
    runner, producer, health = service(MAX_RECORD_BYTES + 1)
    runner.publish()
    assert producer.produced == []
    assert too_large() == before + 1
    assert "over the 900,000-byte record limit" in health.snapshot()["snapshot_too_large"]
    runner.publish()  # nothing learned since: not tried again
    assert too_large() == before + 1


def test_a_snapshot_within_the_limit_is_produced() -> None:
    runner, producer, health = service(1000)
    runner.publish()
    assert producer.produced == [("demo.models", 1000)] and "snapshot_too_large" not in health.snapshot()

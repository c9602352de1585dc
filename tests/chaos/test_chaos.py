"""The short chaos run CI does on every change: seeded runs of the whole embedded stack under faults, per broker.

Each run sends 4,000 events at 400/s (and their labels) through the gateway and a direct producer
while four faults hit four services: one SIGKILL, one SIGTERM, one short SIGSTOP and one longer than
the session timeout. The two runs split the eight services between them, so every service, both
registries included, is hit on every change. Both run on each broker tier: the embedded Tansu and a
single Apache Kafka node (``EDDY_EMBEDDED_BROKER=kafka``; skipped without Java and Maven unless
``EDDY_REQUIRE_KAFKA=1``), or once against ``EDDY_BOOTSTRAP_SERVERS`` when that names a broker.

On Kafka one more run has the services write transactionally and the checker read committed. There
Kafka's semantics are asserted, not Tansu's: aborted records are hidden from read_committed readers,
so no service may redeliver at all (the redelivery limit is 0, not a batch bound). Each run then
settles and the checker must pass every check (``tests/chaos/checker.py``); the report, with its
fault log, is printed either way. The long version is ``python -m bench.chaos`` (``docs/reliability.md``).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import checker
from tests.chaos.faults import ALL_SERVICES
from tests.chaos.harness import RunConfig, RunResult, run_once
from tests.conftest import broker_tiers, skip_without_kafka

pytestmark = pytest.mark.e2e

# Each half holds two services of the data path and two around it.
HALVES = {
    101: ("ingestion", "inference", "schema_registry", "monitoring"),
    102: ("validation", "learning", "model_registry", "retraining"),
}
# The transactional run on Kafka faults the services whose loops write transactionally on the data path.
TRANSACTIONAL_TARGETS = ("ingestion", "validation", "inference", "learning")


def test_the_halves_cover_every_service() -> None:
    assert sorted(s for half in HALVES.values() for s in half) == sorted(ALL_SERVICES)


def config_for(tier: str, seed: int, **changes: Any) -> RunConfig:
    """The run on ``tier``: the stack starts Tansu or one Kafka node, or uses the external broker."""
    if tier == "kafka":
        skip_without_kafka()
    # An external broker keeps earlier runs' topics: a stream of the run's own there.
    stream = f"chaos{seed}x{uuid.uuid4().hex[:6]}" if tier == "external" else ""
    broker = "kafka" if tier == "kafka" else "tansu"
    base = RunConfig(seed=seed, events=4000, rate=400.0, faults=4, settle_timeout_s=90.0, broker=broker)
    return replace(base, stream_name=stream, **changes)


def assert_passed(result: RunResult, workdir: Path) -> None:
    print(result.report)
    assert result.passed, f"{result.report}\nlogs: {workdir / 'state' / 'logs'}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("tier", broker_tiers())
@pytest.mark.parametrize("seed", sorted(HALVES))
def test_no_loss_no_double_learning_under_faults(seed: int, tier: str, tmp_path: Path) -> None:
    config = config_for(tier, seed, targets=HALVES[seed])
    result = run_once(config, tmp_path / f"seed{seed}")
    assert_passed(result, tmp_path / f"seed{seed}")
    assert sorted(f.fault.service for f in result.faults) == sorted(HALVES[seed])


@pytest.mark.timeout(300)
def test_transactions_on_kafka_hide_aborted_records_under_faults(tmp_path: Path) -> None:
    if "kafka" not in broker_tiers():
        pytest.skip("the Kafka tier is not chosen (EDDY_TEST_BROKERS, EDDY_BOOTSTRAP_SERVERS)")
    config = config_for("kafka", 103, targets=TRANSACTIONAL_TARGETS, transactions=True, isolation="read_committed")
    result = run_once(config, tmp_path / "seed103")
    assert_passed(result, tmp_path / "seed103")
    redeliveries = result.verdict.check(checker.REDELIVERIES)
    assert redeliveries.limit == 0, "on Kafka with transactions no service may redeliver"
    assert result.verdict.check(checker.ABORTED).limit is None

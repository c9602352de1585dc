"""The short broker-fault run CI can afford: a 3-node Kafka cluster whose brokers are killed, stopped and paused.

One seeded run (about two minutes on two cores): 6,000 events at 400/s through the gateway and a
direct producer, two service faults, and two broker faults on a 3-node KRaft cluster of the run's own
(stream topics with replication factor 3 and ``min.insync.replicas=2``; ``tests/chaos/broker_faults.py``).
The seed's plan kills the active controller, then stops a partition leader past the broker session timeout. The
checker must pass every check, as in the service-only runs. The long version, with transactions too,
is ``python -m bench.chaos --broker-faults 3`` (``docs/reliability.md``).

Plan helpers are tested here too, without a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.broker_faults import plan_broker_faults
from tests.chaos.harness import RunConfig, run_once
from tests.conftest import broker_tiers, skip_without_kafka

SEED = 215


def test_a_plan_aims_at_the_controller_and_at_leaders_with_every_kind() -> None:
    plan = plan_broker_faults(SEED, 6, (2.0, 20.0), ("events", "predictions"))
    assert {f.role for f in plan} == {"controller", "leader"}
    assert {f.kind for f in plan} == {"SIGKILL", "SIGTERM", "SIGSTOP"}
    assert all(f.topic_kind in ("events", "predictions") for f in plan if f.role == "leader")
    assert [f.at_s for f in plan] == sorted(f.at_s for f in plan)


def test_the_ci_seed_hits_a_leader_and_the_controller() -> None:
    # The run below depends on it: its two faults must cover both roles.
    roles = {f.role for f in plan_broker_faults(SEED, 2, (1.5, 13.5), ("events",))}
    assert roles == {"controller", "leader"}


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_no_loss_no_double_learning_under_broker_faults(tmp_path: Path) -> None:
    if os.environ.get("EDDY_BOOTSTRAP_SERVERS") or "kafka" not in broker_tiers():
        pytest.skip("the Kafka tier is not chosen (EDDY_TEST_BROKERS, EDDY_BOOTSTRAP_SERVERS)")
    skip_without_kafka()
    config = RunConfig(
        seed=SEED,
        events=6000,
        rate=400.0,
        faults=2,
        targets=("validation", "inference"),
        settle_timeout_s=90.0,
        broker_faults=2,
    )
    result = run_once(config, tmp_path / "run")
    print(result.report)
    assert result.passed, f"{result.report}\nlogs: {tmp_path / 'run' / 'state' / 'logs'}"
    assert all(b.injected_ms for b in result.broker_faults)

"""The short chaos run CI does on every change: two seeded runs of the whole embedded stack under faults.

Each run sends 4,000 events at 400/s (and their labels) through the gateway and a direct producer
while four faults hit four services: one SIGKILL, one SIGTERM, one short SIGSTOP and one longer than
the session timeout. The two runs split the eight services between them, so every service, both
registries included, is hit on every change. Each run then settles and the checker must pass every
check (``tests/chaos/checker.py``); the report, with its fault log, is printed either way. The long
version is ``python -m bench.chaos`` (``docs/reliability.md``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.faults import ALL_SERVICES
from tests.chaos.harness import RunConfig, run_once

pytestmark = pytest.mark.e2e

# Each half holds two services of the data path and two around it.
HALVES = {
    101: ("ingestion", "inference", "schema_registry", "monitoring"),
    102: ("validation", "learning", "model_registry", "retraining"),
}


def test_the_halves_cover_every_service() -> None:
    assert sorted(s for half in HALVES.values() for s in half) == sorted(ALL_SERVICES)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", sorted(HALVES))
def test_no_loss_no_double_learning_under_faults(seed: int, tmp_path: Path) -> None:
    config = RunConfig(seed=seed, events=4000, rate=400.0, faults=4, targets=HALVES[seed], settle_timeout_s=90.0)
    result = run_once(config, tmp_path / f"seed{seed}")
    print(result.report)
    assert result.passed, f"{result.report}\nlogs: {tmp_path / f'seed{seed}' / 'state' / 'logs'}"
    assert sorted(f.fault.service for f in result.faults) == sorted(HALVES[seed])

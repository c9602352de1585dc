"""bench_signing's in-process parts on a small model: the measurements run, and what they conclude holds."""

from __future__ import annotations

import doctest
import json
import pickle
from pathlib import Path

import pytest
from eddy.core.signing import Keyring, KeyringSource

from bench import bench_signing
from bench.bench_signing import (
    DEMO,
    DEMO_SPEC,
    artifact_cost,
    build_estimator,
    forged_refusals,
    generic_json,
    linear_from_state,
    linear_state,
    long_run_checkpoint,
    restricted_loads,
    same_model,
    sea_rows,
)


@pytest.fixture(scope="module")
def rows() -> list[bench_signing.Row]:
    return sea_rows(400)


@pytest.fixture(scope="module")
def model(rows: list[bench_signing.Row]) -> object:
    trained = build_estimator(DEMO_SPEC)
    for x, y in rows[:300]:
        trained.learn_one(x, y)
    return trained


def test_doctests() -> None:
    assert doctest.testmod(bench_signing, optionflags=doctest.ELLIPSIS).failed == 0


def test_artifact_cost_of_a_checkpoint(model: object) -> None:
    cost = artifact_cost(
        "checkpoint", long_run_checkpoint(model, remembered=1_000), KeyringSource(static=Keyring.generate()), reps=2
    )
    assert cost.size > 1_000 * 5
    assert min(cost.dumps_us, cost.sign_us, cost.verify_us, cost.loads_us, cost.restricted_us) > 0
    assert cost.share > 0


def test_the_restricted_unpickler_loads_the_model_and_refuses_forgeries(
    model: object, rows: list[bench_signing.Row], tmp_path: Path
) -> None:
    data = pickle.dumps(model)
    assert same_model(restricted_loads(data), pickle.loads(data), rows[300:])
    assert all(refused for _, refused in forged_refusals(tmp_path))
    assert not list(tmp_path.iterdir())


def test_json_carries_the_linear_state_exactly_but_not_generically(
    model: object, rows: list[bench_signing.Row]
) -> None:
    rebuilt = linear_from_state(json.loads(json.dumps(linear_state(model))))
    assert same_model(rebuilt, pickle.loads(pickle.dumps(model)), rows[300:])
    _, obstacles = generic_json(model)
    assert "river._river_rust.vectordict.VectorDict" in obstacles
    assert DEMO.startswith("demo pipeline")

"""Sharded learning (issue 23, point 2): which learners a process runs, which partitions each learns, and
their checkpoints and snapshots, one per shard."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from eddy.contracts.durations import ContractError
from eddy.contracts.learning import LearningSpec
from eddy.contracts.stream import StreamContract
from eddy.ml.models import ModelState, build_estimator
from eddy.ml.roles import VersionKey
from eddy.runtime.observability import Health
from eddy.services.learning import checkpoint
from eddy.services.learning.config import LearningProcesses
from eddy.services.learning.handlers import JoinLimits, Learner, LearnerState
from eddy.services.learning.runner import LearningService, check_partitions
from eddy.services.learning.shards import needed_partitions, owned_shards

from tests.keys import TEST_KEYS
from tests.records import demo_contract, label, prediction, record

PARTITIONS = 4


def sharded_contract(shards: int = 2, shadow: bool = False) -> StreamContract:
    """The demo contract with its champion learning in ``shards`` shards (and an exact shadow, if asked)."""
    contract = demo_contract()
    champion = dataclasses.replace(contract.champion, learning=LearningSpec("sharded", shards))
    models = (champion, dataclasses.replace(contract.champion, name="shadow")) if shadow else (champion,)
    return dataclasses.replace(contract, models=models)


def test_process_k_owns_the_shards_s_with_s_mod_m_equal_k_and_process_0_the_exact_models() -> None:
    contract = sharded_contract(shards=4, shadow=True)
    champion, shadow = contract.models
    assert [owned_shards(champion, LearningProcesses(2, k)) for k in (0, 1)] == [[0, 2], [1, 3]]
    assert [owned_shards(shadow, LearningProcesses(2, k)) for k in (0, 1)] == [[None], []]
    assert owned_shards(champion, LearningProcesses()) == [0, 1, 2, 3]
    # Process 0 reads every partition for its exact shadow; process 1 only its shards' partitions.
    assert needed_partitions(contract, LearningProcesses(2, 0), 8) == list(range(8))
    assert needed_partitions(contract, LearningProcesses(2, 1), 8) == [1, 3, 5, 7]
    assert needed_partitions(sharded_contract(4), LearningProcesses(2, 0), 8) == [0, 2, 4, 6]
    assert needed_partitions(sharded_contract(4), LearningProcesses(4, 3), 8) == [3, 7]


def test_each_shard_has_its_own_checkpoint(tmp_path: Path) -> None:
    state_dir = tmp_path
    contract = sharded_contract()
    paths = {s: checkpoint.checkpoint_path(state_dir, "demo", "default", 1, s) for s in (None, 0, 1)}
    assert len(set(paths.values())) == 3
    for shard, learned in ((0, 7), (1, 9)):
        state = LearnerState(ModelState.fresh("demo", contract.champion))
        state.model.learned_count = learned
        checkpoint.save(paths[shard], checkpoint.Checkpoint("c", state), TEST_KEYS)
    saved = checkpoint.load(paths[1], TEST_KEYS)
    assert saved is not None and saved.state.model.learned_count == 9
    assert checkpoint.saved_versions(state_dir, "demo", "default", 0) == [1]
    assert checkpoint.saved_versions(state_dir, "demo", "default") == []  # the exact model's: none


def service(contract: StreamContract, processes: LearningProcesses) -> LearningService:
    """A learning service without Kafka: the learners of the shards ``processes`` owns, fresh."""
    runner = object.__new__(LearningService)
    runner.ctx = SimpleNamespace(contracts={"demo": contract}, health=Health("learning"))
    runner.processes, runner.limits, runner.feed = processes, JoinLimits(), None
    runner.learners = {}
    for spec in contract.models:
        for shard in owned_shards(spec, processes):
            state = LearnerState(ModelState.fresh("demo", spec))
            learner = Learner(contract, state, JoinLimits(), clock=lambda: 1_700_000_005.0)
            runner.learners[("demo", VersionKey(spec.name, 1), shard)] = learner
    return runner


def inputs(count: int) -> list[Any]:
    """Predictions then labels of ``count`` events, event i on partition i % PARTITIONS."""
    preds = [record("demo.predictions", prediction(i), offset=i, partition=i % PARTITIONS) for i in range(count)]
    labels = [record("demo.feedback", label(i, i % 3 == 0), offset=i, partition=i % PARTITIONS) for i in range(count)]
    return preds + labels


def river_on(ids: list[int], contract: StreamContract) -> Any:
    model = build_estimator(contract.champion)
    for i in ids:
        model.learn_one(prediction(i)["features"], i % 3 == 0)
    return model


def test_each_shard_learns_exactly_its_partitions_labels_in_order() -> None:
    contract = sharded_contract()
    runner = service(contract, LearningProcesses())
    result = runner._handle(inputs(40))
    assert len(result.outputs) == 40 and not result.dead
    key = VersionKey("default", 1)
    probe = {"x0": 3.0, "x1": 2.0, "x2": 3.0}
    for shard in (0, 1):
        model = runner.learners[("demo", key, shard)].state.model
        mine = [i for i in range(40) if i % PARTITIONS % 2 == shard]
        assert model.learned_count == len(mine) == 20
        assert model.estimator.predict_proba_one(probe) == river_on(mine, contract).predict_proba_one(probe)


def test_a_second_process_runs_and_reads_only_its_shards() -> None:
    contract = sharded_contract(shadow=True)
    runner = service(contract, LearningProcesses(2, 1))
    assert list(runner.learners) == [("demo", VersionKey("default", 1), 1)]
    handed = [TopicPartition(t, p) for t in ("demo.predictions", "demo.feedback") for p in range(PARTITIONS)]
    consumer = SimpleNamespace(assign=lambda partitions: None)
    runner.on_assign(consumer, handed)  # type: ignore[arg-type]
    assert {(tp.topic, tp.partition) for tp in handed} == {
        (t, p) for t in ("demo.predictions", "demo.feedback") for p in (1, 3)
    }
    result = runner._handle(inputs(40))
    assert runner.learners[("demo", VersionKey("default", 1), 1)].state.model.learned_count == 20
    assert {out.key for out in result.outputs} == {f"e{i}" for i in range(40) if i % 2 == 1}


def test_offsets_reach_only_the_learners_of_their_partition() -> None:
    runner = service(sharded_contract(), LearningProcesses())
    runner._dirty, runner._last_checkpoint, runner._last_snapshot = False, float("inf"), float("inf")
    runner.ctx.settings = SimpleNamespace(checkpoint_interval_s=1e9, snapshot_interval_s=1e9)
    loop = SimpleNamespace(commit=lambda offsets: None)
    runner.on_batch_done({("demo.feedback", 0): 5, ("demo.feedback", 1): 7}, loop)  # type: ignore[arg-type]
    offsets = {s: runner.learners[("demo", VersionKey("default", 1), s)].state.offsets for s in (0, 1)}
    assert offsets == {0: {"demo.feedback:0": 5}, 1: {"demo.feedback:1": 7}}


def test_learning_refuses_to_start_on_a_partition_count_that_does_not_fit_the_shards() -> None:
    contract = sharded_contract(shards=4)
    check_partitions({"demo": contract}, {"demo.predictions": 8, "demo.feedback": 8})
    with pytest.raises(ContractError, match=r"demo\.predictions has 6 partitions: model 'default' learns in 4 shards"):
        check_partitions({"demo": contract}, {"demo.predictions": 6, "demo.feedback": 6})

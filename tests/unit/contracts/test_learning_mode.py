"""A model's learning mode in the contract: exact (default) or sharded, with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from eddy.contracts.durations import ContractError
from eddy.contracts.learning import SHARDED, LearningSpec, partition_problem, shard_of_key, shard_of_partition
from eddy.contracts.stream import load_contract
from eddy.core.settings import REPO_ROOT

DEMO = REPO_ROOT / "schemas" / "streams"


def contract_with(tmp_path: Path, learning: object) -> Path:
    doc = yaml.safe_load((DEMO / "demo.yaml").read_text())
    if learning is not None:
        doc["models"][0]["learning"] = learning
    (tmp_path / "demo.avsc").write_text((DEMO / "demo.avsc").read_text())
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_exact_is_the_default_and_sharded_says_how_many_shards(tmp_path: Path) -> None:
    assert load_contract(contract_with(tmp_path, None)).champion.learning == LearningSpec()
    assert load_contract(contract_with(tmp_path, {"mode": "exact"})).champion.shards == 1
    sharded = load_contract(contract_with(tmp_path, {"mode": "sharded", "shards": 4})).champion
    assert sharded.learning == LearningSpec(SHARDED, 4) and sharded.shards == 4
    # The river pipeline is the same whichever way it learns: snapshots' spec JSON does not change.
    assert sharded.to_json() == load_contract(contract_with(tmp_path, None)).champion.to_json()


@pytest.mark.parametrize(
    ("learning", "says"),
    [
        ({"mode": "sharded"}, "learning.shards must be an integer of at least 2, got None"),
        ({"mode": "sharded", "shards": 1}, "learning.shards must be an integer of at least 2, got 1"),
        ({"mode": "sharded", "shards": True}, "learning.shards must be an integer of at least 2"),
        ({"mode": "sharded", "shards": "2"}, "learning.shards must be an integer of at least 2"),
        ({"mode": "minibatch"}, "learning.mode 'minibatch' is not one of"),
        ({"mode": "exact", "shards": 2}, "learning.shards applies to mode sharded only"),
        ({"mode": "sharded", "shards": 2, "by": "region"}, "unknown learning key(s) ['by']"),
        ("sharded", "learning must be a mapping"),
    ],
)
def test_a_bad_learning_section_is_a_contract_error_naming_the_model(
    tmp_path: Path, learning: object, says: str
) -> None:
    with pytest.raises(ContractError, match=r"model 'default': .*") as raised:
        load_contract(contract_with(tmp_path, learning))
    assert says in str(raised.value)


def test_the_partition_count_must_be_a_multiple_of_the_shards() -> None:
    assert partition_problem({"m": 2}, 4, "t") is None and partition_problem({"m": 4}, 8, "t") is None
    problem = partition_problem({"exact": 1, "m": 4}, 6, "demo.feedback")
    assert problem is not None and problem.startswith("demo.feedback has 6 partitions: model 'm' learns in 4 shards")


def test_the_shard_of_a_key_is_the_shard_of_the_partition_kafka_puts_it_in() -> None:
    # librdkafka's murmur2 partitioner: partition = murmur2(key) % partitions; with partitions a multiple of
    # the shards, shard_of_partition(partition) == shard_of_key(key) for every key.
    from eddy.contracts.learning import murmur2

    for i in range(500):
        key = f"e{i}"
        for partitions, shards in ((4, 2), (8, 4), (6, 3), (12, 2)):
            assert shard_of_partition(murmur2(key.encode()) % partitions, shards) == shard_of_key(key, shards)
    spread = [shard_of_key(f"e{i}", 2) for i in range(10_000)]
    assert 4_800 < spread.count(0) < 5_200


def test_topics_are_not_created_with_a_partition_count_that_does_not_fit_the_shards(tmp_path: Path) -> None:
    from eddy.core.settings import Settings
    from eddy.runtime.create_topics import wanted_topics

    contract_with(tmp_path, {"mode": "sharded", "shards": 2})
    assert "demo.feedback" in wanted_topics(Settings(contracts_dir=tmp_path, partitions=4))
    with pytest.raises(ContractError, match="stream 'demo' has 3 partitions: model 'default' learns in 2 shards"):
        wanted_topics(Settings(contracts_dir=tmp_path, partitions=3))

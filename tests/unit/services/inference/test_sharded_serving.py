"""A version learning in shards is served by shard: the record of partition p by shard p % N."""

from __future__ import annotations

from typing import Any

from eddy.contracts.learning import shard_of_key
from eddy.ml.models import ModelState
from eddy.services.inference.handlers import PredictBatch, fresh_models
from eddy.services.inference.serving import ServingTable

from tests.keys import TEST_KEYS
from tests.records import event, record
from tests.unit.services.learning.test_sharded_learning import sharded_contract

PROBE = {"x0": 9.0, "x1": 1.0, "x2": 1.0}


def snapshot(shard: int | None, learned: int, label: bool | None = None) -> dict[str, Any]:
    """A snapshot of default@1 (of ``shard``) that learned ``learned`` labels, all ``label`` (None: nothing)."""
    state = ModelState.fresh("demo", sharded_contract().champion)
    for _ in range(learned if label is not None else 0):
        state.estimator.learn_one(PROBE, label)
    state.learned_count = learned
    state.newest_label_ms = 1_000 * learned
    return {**state.to_snapshot_record(TEST_KEYS), "shard": shard}


def table() -> ServingTable:
    contract = sharded_contract()
    return ServingTable({"demo": contract}, fresh_models({"demo": contract}), TEST_KEYS)


def test_shards_are_held_apart_and_the_registry_snapshot_stands_in_until_a_shard_arrives() -> None:
    serving = table()
    assert serving.load(snapshot(None, 5, True))  # the registry's: every shard starts from it
    assert serving.load(snapshot(1, 50, False))
    assert not serving.load(snapshot(1, 40, True))  # older than the held shard 1
    assert not serving.load(snapshot(None, 5, True))  # nothing newer for any shard
    assert serving.serve("demo")
    model = serving.models["demo"].champion
    assert [s.learned for s in model.shards] == [5, 50] and model.learned == 5
    assert model.shards[0].estimator.predict_one(PROBE) is True
    assert model.shards[1].estimator.predict_one(PROBE) is False
    assert model.newest_label_ms == 5_000  # the slowest shard's


def test_records_are_predicted_by_their_partitions_shard_and_http_requests_by_their_keys() -> None:
    contract = sharded_contract()
    serving = table()
    serving.load(snapshot(0, 10, True))
    serving.load(snapshot(1, 20, False))
    serving.serve("demo")
    handler = PredictBatch({"demo": contract}, serving.models)
    records = [record("demo.validated", event(i, **PROBE), offset=i, partition=i % 4) for i in range(8)]
    records.append(record("demo.validated", event(99, **PROBE), offset=-1, partition=-1))  # an HTTP request
    values = [out.value for out in handler(records).outputs]
    assert [v["shard"] for v in values[:8]] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert [v["prediction"] for v in values[:8]] == [True, False] * 4
    assert [v["model_learned"] for v in values[:8]] == [10, 20] * 4
    assert values[8]["shard"] == shard_of_key("e99", 2)
    assert values[8]["model_learned"] == (10, 20)[values[8]["shard"]]


def test_an_exact_models_predictions_carry_no_shard() -> None:
    from tests.records import demo_contract

    contract = demo_contract()
    handler = PredictBatch({"demo": contract}, fresh_models({"demo": contract}))
    (out,) = handler([record("demo.validated", event(1), partition=3)]).outputs
    assert out.value["shard"] is None

import dataclasses
from typing import Any

from eddy.contracts.stream import ModelSpec
from eddy.ml.models import ModelState, build_estimator, predict_batch
from eddy.services.inference.handlers import PredictBatch, ServingModel, ServingSet, fresh_models

from tests.records import demo_contract, event, record


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 0.002
        return self.t


def trained_state() -> ModelState:
    contract = demo_contract()
    state = ModelState.fresh("demo", contract.champion)
    for i in range(200):
        x = {"x0": float(i % 10), "x1": 1.0, "x2": 1.0}
        state.estimator.learn_one(x, i % 10 > 4)
        state.learned_count += 1
    return state


def test_predictions_carry_model_features_and_coordinates() -> None:
    contract = demo_contract()
    models = fresh_models({"demo": contract})
    handler = PredictBatch({"demo": contract}, models, clock=Clock())
    result = handler([record("demo.validated", event(i), offset=i, partition=2) for i in range(3)])
    assert len(result.outputs) == 3 and not result.dead
    out = result.outputs[0]
    assert out.topic == "demo.predictions" and out.key == "e0"
    value = out.value
    assert value["features"] == {"x0": 1.0, "x1": 2.0, "x2": 3.0}
    assert "region" not in value["features"]
    assert (value["model_name"], value["model_version"], value["model_learned"]) == ("default", 1, 0)
    assert value["served"] is True
    assert value["probabilities"] == {"false": 0.5, "true": 0.5}
    assert value["source_partition"] == 2 and value["source_offset"] == 0
    assert value["latency_ms"] > 0


def test_swapped_model_is_used_for_the_next_batch() -> None:
    contract = demo_contract()
    models = fresh_models({"demo": contract})
    handler = PredictBatch({"demo": contract}, models)
    models["demo"] = ServingSet(ServingModel.from_state(trained_state(), "binary"))
    high = handler([record("demo.validated", event(1, x0=9.0, x1=1.0, x2=1.0))]).outputs[0].value
    assert high["model_learned"] == 200
    assert high["prediction"] is True and high["probabilities"]["true"] > 0.5


def test_batch_and_single_predictions_agree() -> None:
    state = trained_state()
    rows: list[dict[str, Any]] = [{"x0": float(i), "x1": 1.0, "x2": 1.0} for i in range(10)]
    batch = predict_batch(state.estimator, "binary", rows)
    single = [predict_batch(state.estimator, "binary", [r])[0] for r in rows]
    for (p1, q1), (p2, q2) in zip(batch, single, strict=True):
        assert p1 == p2
        assert q1 is not None and q2 is not None
        assert abs(q1["true"] - q2["true"]) < 1e-9


def test_untrained_tree_answers_none_and_regression_answers_numbers() -> None:
    from eddy.contracts.stream import ModelSpec

    tree = build_estimator(ModelSpec("t", (("tree.HoeffdingTreeClassifier", {}),), ("x0",)))
    assert predict_batch(tree, "binary", [{"x0": 1.0}, {"x0": 2.0}]) == [(None, None), (None, None)]
    reg = build_estimator(ModelSpec("r", (("linear_model.LinearRegression", {}),), ("x0",)))
    reg.learn_one({"x0": 1.0}, 2.0)
    answers = predict_batch(reg, "regression", [{"x0": 1.0}, {"x0": 2.0}])
    assert all(isinstance(p, float) and q is None for p, q in answers)


def test_serving_model_ordering() -> None:
    m = ServingModel("m", 1, 10, None, ("x0",), "binary")
    assert m.is_older_than(1, 11)
    assert not m.is_older_than(1, 10)
    assert m.is_older_than(2, 0)


def test_challengers_predict_in_shadow_on_their_own_features() -> None:
    contract = demo_contract()
    challenger = ModelSpec("tree", (("tree.HoeffdingTreeClassifier", {}),), ("x0", "x1"))
    contract = dataclasses.replace(contract, models=(*contract.models, challenger))
    handler = PredictBatch({"demo": contract}, fresh_models({"demo": contract}))
    outputs = handler([record("demo.validated", event(i), offset=i) for i in range(3)]).outputs
    # The champion's answers first, in record order, then the challenger's shadow predictions.
    assert [(o.value["model_name"], o.value["served"], o.key) for o in outputs] == [
        ("default", True, "e0"),
        ("default", True, "e1"),
        ("default", True, "e2"),
        ("tree", False, "e0"),
        ("tree", False, "e1"),
        ("tree", False, "e2"),
    ]
    assert outputs[3].value["features"] == {"x0": 1.0, "x1": 2.0}


def test_the_challenger_answers_its_canary_share_and_shadows_the_rest() -> None:
    contract = demo_contract()
    champion = ServingModel.fresh(contract)
    challenger = dataclasses.replace(ServingModel.from_state(trained_state(), "binary"), version=2)
    models = {"demo": ServingSet(champion, challenger, canary=0.3)}
    handler = PredictBatch({"demo": contract}, models)
    outputs = handler([record("demo.validated", event(i), offset=i) for i in range(400)]).outputs
    served = [o.value for o in outputs if o.value["served"]]
    # Exactly one answer per event, from one of the two versions, and the share close to the canary's.
    assert sorted(v["event_id"] for v in served) == sorted(f"e{i}" for i in range(400))
    by_challenger = [v for v in served if v["model_version"] == 2]
    assert 0.2 < len(by_challenger) / 400 < 0.4
    # The routing is a function of the event id: the same event goes the same way again.
    again = handler([record("demo.validated", event(i), offset=i) for i in range(400)]).outputs
    assert {o.value["event_id"] for o in again if o.value["served"] and o.value["model_version"] == 2} == {
        v["event_id"] for v in by_challenger
    }

"""Batched learning (issue 23): the learner's model is bit for bit the one river builds one example at a time."""

import random
from typing import Any

import pytest
from eddy.contracts.stream import ModelSpec
from eddy.ml.linear_kernel import LinearKernel
from eddy.ml.models import ModelState, build_estimator
from eddy.services.learning import metrics
from eddy.services.learning.exact_batch import ExactBatch
from eddy.services.learning.handlers import JoinLimits, Learner, LearnerState
from prometheus_client import Histogram

from tests.records import demo_contract, label, prediction, record

LINEAR = ModelSpec(
    "default",
    (("preprocessing.StandardScaler", {}), ("linear_model.LogisticRegression", {"l2": 0.01})),
    ("x0", "x1", "x2"),
)
native = pytest.mark.skipif(
    LinearKernel.of(build_estimator(LINEAR), LINEAR.features) is None, reason="no native linear kernel"
)


def rows(n: int, seed: int = 7) -> list[tuple[dict[str, Any], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {f"x{k}": rng.uniform(-5, 5) for k in range(3)}
        out.append((x, x["x0"] - x["x1"] > 0.5))
    return out


def state_of(model: Any) -> tuple[Any, ...]:
    scaler, logreg = model.steps.values()
    return (
        dict(scaler.counts),
        dict(scaler.means),
        dict(scaler.vars),
        dict(logreg._weights),
        logreg.intercept,
        logreg.optimizer.n_iterations,
    )


def river_loop(spec: ModelSpec, examples: list[tuple[Any, Any]]) -> Any:
    model = build_estimator(spec)
    for x, y in examples:
        try:
            model.learn_one(x, y)
        except Exception:  # a failing example leaves whatever river changed, as in the learner
            continue
    return model


@native
def test_kernel_batch_equals_river_bit_for_bit() -> None:
    examples = rows(3000)
    model = build_estimator(LINEAR)
    batch = ExactBatch(model, LINEAR.features, "binary")
    assert batch.learn(examples[:1000]) == [None] * 1000
    assert batch.learn(examples[1000:]) == [None] * 2000
    assert batch.native_count == 3000
    assert state_of(model) == state_of(river_loop(LINEAR, examples))


@native
def test_examples_the_kernel_cannot_take_are_learned_by_river_in_their_place() -> None:
    examples: list[tuple[Any, Any]] = list(rows(600))
    examples[10] = ({"x0": 1, "x1": 0.5, "x2": 2.0}, True)  # an int feature
    examples[11] = ({"x1": 0.5, "x0": 1.0, "x2": 2.0}, False)  # another order
    examples[200] = ({"x0": 1.0, "x1": 2.0}, True)  # a missing feature
    examples[599] = ({"x0": 1.0, "x1": float("inf"), "x2": 0.0}, True)  # not finite (last: it makes NaNs)
    examples[300] = ({"x0": 1.0, "x1": 2.0, "x2": 3.0}, 1)  # a label of another type
    examples[400] = ({"x0": None, "x1": 2.0, "x2": 3.0}, True)  # river fails on it
    model = build_estimator(LINEAR)
    batch = ExactBatch(model, LINEAR.features, "binary")
    errors = batch.learn(examples)
    assert [k for k, e in enumerate(errors) if e is not None] == [400]
    assert batch.native_count == 600 - 6
    # repr: the infinite feature leaves NaNs, equal to themselves only in writing.
    assert repr(state_of(model)) == repr(state_of(river_loop(LINEAR, examples)))


def test_models_the_kernel_does_not_reproduce_are_learned_by_river() -> None:
    spec = ModelSpec("default", (("tree.HoeffdingAdaptiveTreeClassifier", {"seed": 1}),), ("x0", "x1", "x2"))
    examples = rows(2000)
    model = build_estimator(spec)
    batch = ExactBatch(model, spec.features, "binary")
    assert batch.kernel is None
    assert batch.learn(examples) == [None] * 2000
    reference = river_loop(spec, examples)
    held_out = [x for x, _ in rows(200, seed=8)]
    assert [model.predict_proba_one(x) for x in held_out] == [reference.predict_proba_one(x) for x in held_out]


@native
def test_regression_through_the_kernel_equals_river() -> None:
    spec = ModelSpec(
        "r", (("preprocessing.StandardScaler", {}), ("linear_model.LinearRegression", {})), ("x0", "x1", "x2")
    )
    examples = [(x, x["x0"] * 2.0 - x["x2"]) for x, _ in rows(1000)]
    model = build_estimator(spec)
    batch = ExactBatch(model, spec.features, "regression")
    assert batch.learn(examples) == [None] * 1000 and batch.native_count == 1000
    reference = river_loop(spec, examples)
    assert model["LinearRegression"].weights == reference["LinearRegression"].weights
    assert model["LinearRegression"].intercept == reference["LinearRegression"].intercept


def learner() -> Learner:
    contract = demo_contract()
    return Learner(contract, LearnerState(ModelState.fresh("demo", contract.champion)), JoinLimits(), lambda: 1.7e9)


def test_the_learner_learns_a_batch_in_join_order_exactly_as_river() -> None:
    lrn = learner()
    preds = [record("demo.predictions", prediction(i, features=x), offset=i) for i, (x, _) in enumerate(rows(500))]
    labels = [record("demo.feedback", label(i, y), offset=i) for i, (_, y) in enumerate(rows(500))]
    # Labels first for the first half, predictions first for the second: the join order is 0..499 either way.
    result = lrn(labels[:250] + preds[:250] + preds[250:] + labels[250:])
    assert [o.key for o in result.outputs] == [f"e{i}" for i in range(500)]
    assert lrn.state.model.learned_count == 500 and list(lrn.state.learned) == [f"e{i}" for i in range(500)]
    reference = river_loop(demo_contract().champion, rows(500))
    assert state_of(lrn.state.model.estimator) == state_of(reference)


def test_a_failing_example_is_dead_lettered_and_neither_counted_nor_remembered() -> None:
    lrn = learner()
    bad = prediction(1, features={"x0": None, "x1": 2.0, "x2": 3.0})
    result = lrn(
        [
            record("demo.predictions", prediction(0), offset=0),
            record("demo.predictions", bad, offset=1),
            record("demo.predictions", prediction(2), offset=2),
            record("demo.feedback", label(0), offset=0),
            record("demo.feedback", label(1), offset=1),
            record("demo.feedback", label(2), offset=2),
        ]
    )
    assert [o.key for o in result.outputs] == ["e0", "e2"]
    assert [(d.reason, d.offset) for d in result.dead] == [("learn_error", 1)]
    assert lrn.state.model.learned_count == 2 and list(lrn.state.learned) == ["e0", "e2"]


def test_a_duplicate_label_in_the_same_batch_is_learned_once() -> None:
    lrn = learner()
    result = lrn(
        [
            record("demo.predictions", prediction(5), offset=0),
            record("demo.feedback", label(5), offset=0),
            record("demo.feedback", label(5), offset=1),
            record("demo.predictions", prediction(5), offset=1),
        ]
    )
    assert [o.key for o in result.outputs] == ["e5"]
    assert [d.reason for d in result.dead] == ["duplicate_label"]
    assert lrn.state.model.learned_count == 1


def test_observe_many_counts_as_observe_does() -> None:
    buckets = (0.1, 1, 5)
    one, many = (
        Histogram("one", "d", buckets=buckets, registry=None),
        Histogram("many", "d", buckets=buckets, registry=None),
    )
    values = [0.05, 0.1, 0.10001, 1, 3, 5, 7, -2, 0.0]
    for v in values:
        one.observe(max(0.0, v))
    metrics.observe_many(many, values)
    assert [s.value for s in one.collect()[0].samples if s.name != "one_created"] == [
        s.value for s in many.collect()[0].samples if s.name != "many_created"
    ]

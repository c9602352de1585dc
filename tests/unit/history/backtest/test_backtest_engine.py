"""The backtest engine against river's own prequential evaluation, on river's datasets and synthetic ones.

The engine predicts through inference's batch function and learns through
learning's, in ``simulate_qa`` order; its final metric must equal
``evaluate.progressive_val_score`` on the same sequence with the same delay.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from typing import Any

import pytest
from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.history.backtest.engine import OBSERVED, BacktestModel, Event, Label, run_backtest, schedule
from eddy.ml import linear_kernel
from eddy.ml.models import build_estimator
from river import datasets, evaluate, metrics

from tests.records import demo_contract

SCALED_LR = (("preprocessing.StandardScaler", {}), ("linear_model.LogisticRegression", {}))
SCALED_LINREG = (("preprocessing.StandardScaler", {}), ("linear_model.LinearRegression", {}))
TREE = (("tree.HoeffdingTreeClassifier", {"grace_period": 50}),)
SOFTMAX = (("preprocessing.StandardScaler", {}), ("linear_model.SoftmaxRegression", {}))


def contract_for(task: str, features: Iterable[str], pipeline: tuple[Any, ...]) -> tuple[StreamContract, ModelSpec]:
    spec = ModelSpec("m", pipeline, tuple(features))
    contract = dataclasses.replace(demo_contract(), task=task, models=(spec,), allowed_lateness_ms=10**12)
    return contract, spec


def as_events(rows: list[tuple[dict[str, Any], Any]]) -> list[Event]:
    return [Event(f"e{i}", i, x) for i, (x, _) in enumerate(rows)]


def river_score(rows: list[tuple[dict[str, Any], Any]], spec: ModelSpec, metric: Any, delay: Any) -> float:
    model = build_estimator(spec)
    result = evaluate.progressive_val_score(rows, model, metric, delay=delay)
    return float(result.get())


CASES = [
    ("phishing", "binary", lambda: list(datasets.Phishing()), SCALED_LR, metrics.Accuracy),
    ("bananas", "binary", lambda: list(datasets.Bananas()), TREE, metrics.Accuracy),
    ("trump", "regression", lambda: list(datasets.TrumpApproval()), SCALED_LINREG, metrics.MAE),
    ("segments", "multiclass", lambda: list(datasets.ImageSegments().take(1000)), SOFTMAX, metrics.Accuracy),
    (
        "sea",
        "binary",
        lambda: [({f"x{k}": v for k, v in x.items()}, y) for x, y in datasets.synth.SEA(seed=3).take(3000)],
        SCALED_LR,
        metrics.Accuracy,
    ),
    (
        "friedman",
        "regression",
        lambda: [({f"x{k}": v for k, v in x.items()}, y) for x, y in datasets.synth.Friedman(seed=3).take(2000)],
        SCALED_LINREG,
        metrics.MAE,
    ),
]


@pytest.fixture(params=["native", "river"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the engine runs a linear pipeline: the C kernel, and river's own one-at-a-time path."""
    if request.param == "river":
        monkeypatch.setattr(linear_kernel, "native", None)
    elif linear_kernel.native is None:
        pytest.skip("the linear kernel is not built here (no C compiler at install time)")
    return str(request.param)


@pytest.mark.parametrize("delay", [0, 7, 250])
@pytest.mark.parametrize(("name", "task", "load", "pipeline", "metric"), CASES, ids=[c[0] for c in CASES])
def test_final_metric_equals_progressive_val_score(
    name: str, task: str, load: Any, pipeline: tuple[Any, ...], metric: Any, delay: int, path: str
) -> None:
    rows = load()
    contract, spec = contract_for(task, rows[0][0].keys(), pipeline)
    events = as_events(rows)
    labels = {e.event_id: Label(y, e.time_ms) for e, (_, y) in zip(events, rows, strict=True)}
    result = run_backtest(contract, events, labels, [BacktestModel.fresh(spec)], delay=delay)
    expected = river_score(rows, spec, metric(), delay)
    assert result.summary["models"][0]["final_metric"] == pytest.approx(expected, abs=1e-9)
    assert result.table["metric"].iloc[-1] == pytest.approx(expected, abs=1e-9)
    assert len(result.table) == len(rows)


def test_observed_delays_are_learned_in_arrival_order_like_simulate_qa(path: str) -> None:
    rows = [({f"x{k}": v for k, v in x.items()}, y) for x, y in datasets.synth.SEA(seed=5).take(3000)]
    draws = random.Random(5)
    delays = [draws.choice([0, 1, 3, 40, 400, 5000]) for _ in rows]
    contract, spec = contract_for("binary", ["x0", "x1", "x2"], SCALED_LR)
    events = as_events(rows)
    labels = {e.event_id: Label(y, e.time_ms + d) for e, (_, y), d in zip(events, rows, delays, strict=True)}
    result = run_backtest(contract, events, labels, [BacktestModel.fresh(spec)], delay=OBSERVED)
    pending = iter(delays)
    expected = river_score(rows, spec, metrics.Accuracy(), lambda x, y: next(pending))
    assert result.summary["models"][0]["final_metric"] == pytest.approx(expected, abs=1e-9)


def test_two_runs_give_identical_tables_and_models_are_compared_on_the_same_sequence() -> None:
    rows = [({f"x{k}": v for k, v in x.items()}, y) for x, y in datasets.synth.SEA(seed=2).take(1000)]
    contract, spec = contract_for("binary", ["x0", "x1", "x2"], SCALED_LR)
    tree = ModelSpec("tree", TREE, spec.features)
    events = as_events(rows)
    labels = {e.event_id: Label(y, e.time_ms + 20) for e, (_, y) in zip(events, rows, strict=True)}

    def run() -> bytes:
        models = [BacktestModel.fresh(spec), BacktestModel.fresh(tree)]
        table = run_backtest(contract, events, labels, models).table
        return table.to_csv(index=False).encode()

    first = run()
    assert first == run()
    table = run_backtest(contract, events, labels, [BacktestModel.fresh(spec), BacktestModel.fresh(tree)]).table
    assert list(table["model"].iloc[:2]) == ["spec:m", "spec:tree"]
    by_model = table.groupby("model")["event_id"].apply(list)
    assert by_model["spec:m"] == by_model["spec:tree"]


def test_warm_start_copies_the_estimator_and_late_labels_are_not_learned() -> None:
    rows = [({f"x{k}": v for k, v in x.items()}, y) for x, y in datasets.synth.SEA(seed=2).take(300)]
    contract, spec = contract_for("binary", ["x0", "x1", "x2"], SCALED_LR)
    contract = dataclasses.replace(contract, allowed_lateness_ms=100)
    start = build_estimator(spec)
    events = as_events(rows)
    # Every other label comes after the contract's lateness: production would not learn it.
    delays = [500 if i % 2 else 5 for i in range(len(rows))]
    labels = {e.event_id: Label(y, e.time_ms + d) for e, (_, y), d in zip(events, rows, delays, strict=True)}
    result = run_backtest(contract, events, labels, [BacktestModel.warm(spec, start, "m@1")])
    assert result.summary["models"][0]["labels"] == 150 and result.summary["models"][0]["start"] == "warm from m@1"
    assert start.steps["StandardScaler"].counts == {}  # the registry's estimator was not touched


def test_schedule_reveals_due_labels_before_the_next_event_and_the_rest_at_the_end() -> None:
    events = [Event("a", 0, {}), Event("b", 10, {}), Event("c", 10, {}), Event("d", 20, {})]
    ops = schedule(events, [10, 10, None, 100])
    assert ops == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (0, 3), (1, 3)]


def test_the_native_path_leaves_river_s_own_model_behind() -> None:
    if linear_kernel.native is None:
        pytest.skip("the linear kernel is not built here")
    rows = list(datasets.Phishing())
    contract, spec = contract_for("binary", rows[0][0].keys(), SCALED_LR)
    events = as_events(rows)
    labels = {e.event_id: Label(y, e.time_ms + 3) for e, (_, y) in zip(events, rows, strict=True)}
    result = run_backtest(contract, events, labels, [BacktestModel.fresh(spec)])
    ours = result.estimators["spec:m"]
    reference = build_estimator(spec)
    evaluate.progressive_val_score(rows, reference, metrics.Accuracy(), delay=3)
    for name, weight in reference["LogisticRegression"].weights.items():
        assert ours["LogisticRegression"].weights[name] == pytest.approx(weight, rel=1e-12, abs=1e-12)
    assert ours["StandardScaler"].counts == reference["StandardScaler"].counts
    x = rows[0][0]
    assert ours.predict_proba_one(x)[True] == pytest.approx(reference.predict_proba_one(x)[True], abs=1e-12)

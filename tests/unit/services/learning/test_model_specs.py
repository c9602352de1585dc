"""Model specs as users write them in contracts: entity aggregates, anomaly detectors, every task."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from eddy.contracts.durations import ContractError
from eddy.contracts.stream import StreamContract, load_contract
from eddy.ml.models import ModelSpecError, ModelState, build_estimator, learn, predict_batch
from eddy.runtime.loop import InRecord
from eddy.services.learning.handlers import Learner, LearnerState

SCHEMA = {
    "type": "record",
    "name": "Payment",
    "namespace": "io.eddy.test",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "event_time_ms", "type": "long"},
        {"name": "amount", "type": ["null", "double"], "default": None},
        {"name": "card", "type": ["null", "string"], "default": None},
    ],
}


def contract(tmp_path: Path, task: str, pipeline: str) -> StreamContract:
    (tmp_path / "payments.avsc").write_text(json.dumps(SCHEMA))
    (tmp_path / "payments.yaml").write_text(
        f"""
stream: payments
event_schema: payments.avsc
features:
  amount: {{type: double}}
  card: {{type: string}}
label: {{task: {task}}}
models:
  - name: m
    features: [amount, card]
    pipeline:
{pipeline}
"""
    )
    return load_contract(tmp_path / "payments.yaml")


ENTITY_MEAN = """
      - compose.TransformerUnion:
          - compose.Select: [amount]
          - feature_extraction.Agg: {"on": amount, by: card, how: {stats.Mean: {}}}
      - preprocessing.StandardScaler: {}
      - linear_model.LogisticRegression: {}
"""


def payment(i: int) -> dict[str, Any]:
    return {"amount": float(i % 7) + (30.0 if i % 3 == 0 else 0.0), "card": f"card{i % 3}"}


def test_an_entity_aggregate_is_part_of_the_pipeline_and_snapshotted_with_it(tmp_path: Path) -> None:
    spec = contract(tmp_path, "binary", ENTITY_MEAN).champion
    model = build_estimator(spec)
    for i in range(300):
        learn(model, payment(i), i % 3 == 0)
    # The per-card mean is state: card0 spends far more, and the model has learned that.
    probe = [{"amount": 3.0, "card": "card0"}, {"amount": 3.0, "card": "card1"}]
    answers = predict_batch(model, "binary", probe)  # Agg has no batch path: predicted one by one
    assert answers[0][0] is True and answers[1][0] is False
    restored = pickle.loads(pickle.dumps(model))
    assert predict_batch(restored, "binary", probe) == answers


def test_an_anomaly_detector_learns_without_labels_and_answers_a_probability(tmp_path: Path) -> None:
    pipeline = """
      - compose.Select: [amount]
      - preprocessing.MinMaxScaler: {}
      - anomaly.HalfSpaceTrees: {seed: 1, window_size: 50}
"""
    model = build_estimator(contract(tmp_path, "binary", pipeline).champion)
    for i in range(500):
        learn(model, {"amount": float(i % 10), "card": "c"}, None)
    (usual, usual_p), (odd, odd_p) = predict_batch(model, "binary", [{"amount": 5.0}, {"amount": 1e6}])
    assert usual_p is not None and odd_p is not None
    assert odd_p["true"] > usual_p["true"] and isinstance(usual, bool) and isinstance(odd, bool)


def label_record(i: int, label: Any) -> InRecord:
    value = {"event_id": f"e{i}", "label": label, "label_time_ms": 2000 + i, "source": None}
    return InRecord("payments.feedback", 0, i, f"e{i}", value, 0, [], b"")


def prediction_record(i: int, features: dict[str, Any]) -> InRecord:
    value = {
        "event_id": f"e{i}",
        "model_name": "m",
        "model_version": 1,
        "model_learned": 0,
        "served": True,
        "prediction": None,
        "probabilities": None,
        "features": features,
        "event_time_ms": 1000 + i,
        "predicted_at_ms": 1000 + i,
    }
    return InRecord("payments.predictions", 0, i, f"e{i}", value, 0, [], b"")


@pytest.mark.parametrize(
    ("task", "pipeline", "label_of", "check"),
    [
        (
            "multiclass",
            "      - compose.Select: [amount]\n      - tree.HoeffdingTreeClassifier: {grace_period: 20}\n",
            lambda i: ["low", "mid", "high"][i % 3],
            lambda p, q: p in {"low", "mid", "high"} and q is not None and set(q) == {"low", "mid", "high"},
        ),
        (
            "regression",
            "      - compose.Select: [amount]\n      - linear_model.LinearRegression: {}\n",
            lambda i: 2.0 * (i % 7),
            lambda p, q: isinstance(p, float) and q is None,
        ),
    ],
)
def test_multiclass_and_regression_learn_through_the_learner(
    tmp_path: Path, task: str, pipeline: str, label_of: Any, check: Any
) -> None:
    c = contract(tmp_path, task, pipeline)
    learner = Learner(c, LearnerState(ModelState.fresh("payments", c.champion)))
    records = []
    for i in range(200):
        records += [prediction_record(i, {"amount": float(i % 7), "card": "c"}), label_record(i, label_of(i))]
    result = learner(records)
    assert learner.state.model.learned_count == 200 and len(result.outputs) == 200 and not result.dead
    answers = predict_batch(learner.state.model.estimator, task, [{"amount": 3.0}, {"amount": 5.0}])
    assert all(check(p, q) for p, q in answers)


def test_unknown_estimators_and_bad_parameters_are_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ModelSpecError, match=r"river\.tree has no class 'NoSuchTree'"):
        build_estimator(contract(tmp_path, "binary", "      - tree.NoSuchTree: {}\n").champion)
    with pytest.raises(ModelSpecError, match=r"bad parameters for linear_model\.LogisticRegression"):
        build_estimator(contract(tmp_path, "binary", "      - linear_model.LogisticRegression: {l9: 1}\n").champion)
    with pytest.raises(ModelSpecError, match="is not a river estimator"):
        build_estimator(contract(tmp_path, "binary", "      - os.system: [ls]\n").champion)


def test_a_parameter_name_yaml_read_as_a_boolean_gets_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="quote such names"):
        contract(tmp_path, "binary", "      - feature_extraction.Agg: {on: amount, by: card, how: {stats.Mean: {}}}\n")

"""How one prediction scores against its label, and a set of them summarised.

Shared by the trainer's held-out evaluation and the trials, so a challenger is
judged by the same rules before and after registration.

Examples
--------
>>> is_correct(True, True), is_correct(None, False), is_correct(1, True)
(True, False, False)
>>> abs_error(2.5, 2.0), abs_error(None, 3.0)
(0.5, 3.0)
>>> summarise("binary", [True, False, True], [True, True, True], [{"true": 0.9}, None, {"true": 0.6}])
{'count': 3, 'accuracy': 0.6667, 'log_loss': 0.3081}
>>> summarise("regression", [1.0, 3.0], [2.0, 2.0])
{'count': 2, 'mae': 1.0, 'rmse': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from eddy.ml.models import Scalar, class_key

# Probabilities are clipped here before the log: a confident wrong answer costs a lot, not infinity.
EPSILON = 1e-15


def is_correct(prediction: Scalar, label: Scalar) -> bool:
    """Whether a classifier's answer is the label; no answer is a wrong answer.

    Compared as Avro map keys (:func:`~eddy.ml.models.class_key`), so ``True`` and ``1`` are different classes.
    """
    return prediction is not None and class_key(prediction) == class_key(label)


def abs_error(prediction: Scalar, label: Scalar) -> float:
    """A regressor's absolute error; a missing or non-finite answer counts as answering 0."""
    y = float(label) if isinstance(label, int | float) else 0.0
    if isinstance(prediction, bool) or not isinstance(prediction, int | float) or not math.isfinite(prediction):
        return abs(y)
    return abs(float(prediction) - y)


def higher_is_better(task: str) -> bool:
    """Accuracy for classification, mean absolute error for regression."""
    return task != "regression"


def score(task: str, prediction: Scalar, label: Scalar) -> float:
    """The per-event score whose mean is the trial metric: 1/0 correctness, or the absolute error."""
    return abs_error(prediction, label) if task == "regression" else float(is_correct(prediction, label))


def summarise(
    task: str,
    predictions: Sequence[Scalar],
    labels: Sequence[Scalar],
    probabilities: Sequence[Mapping[str, float] | None] | None = None,
) -> dict[str, Any]:
    """Accuracy and log loss (over the predictions that have probabilities), or MAE and RMSE, rounded for JSON."""
    n = len(labels)
    out: dict[str, Any] = {"count": n}
    if n == 0:
        return out
    if task == "regression":
        errors = [abs_error(p, y) for p, y in zip(predictions, labels, strict=True)]
        out["mae"] = round(sum(errors) / n, 6)
        out["rmse"] = round(math.sqrt(sum(e * e for e in errors) / n), 6)
        return out
    out["accuracy"] = round(sum(is_correct(p, y) for p, y in zip(predictions, labels, strict=True)) / n, 4)
    if probabilities is not None:
        known = [(probs, y) for probs, y in zip(probabilities, labels, strict=True) if probs]
        if known:
            loss = sum(-math.log(max(EPSILON, min(1.0, probs.get(class_key(y), 0.0)))) for probs, y in known)
            out["log_loss"] = round(loss / len(known), 4)
    return out


def metric_name(task: str) -> str:
    return "mae" if task == "regression" else "accuracy"


def finite(value: Any) -> Any:
    """``value`` with non-finite floats as None, for JSON (which has no NaN or infinity).

    >>> finite({"a": [1.0, float("inf")], "b": float("nan")})
    {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value

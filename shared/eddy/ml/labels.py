"""Labels as a model learns them: the one coercion every learner, backtest and trainer uses."""

from __future__ import annotations

from typing import Any


class LabelError(ValueError):
    """A label that does not fit the stream's task."""


def coerce_label(label: Any, task: str) -> Any:
    """The label as the model learns it: bool for binary, float for regression.

    >>> coerce_label(1, "binary"), coerce_label("false", "binary"), coerce_label(3, "regression")
    (True, False, 3.0)
    """
    if label is None:
        raise LabelError("label is null")
    if task == "binary":
        if isinstance(label, bool):
            return label
        if isinstance(label, int | float) and label in (0, 1):
            return bool(label)
        if isinstance(label, str) and label.lower() in ("true", "false", "1", "0"):
            return label.lower() in ("true", "1")
        raise LabelError(f"binary label must be true/false or 0/1, got {label!r}")
    if task == "regression":
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise LabelError(f"regression label must be a number, got {label!r}")
        return float(label)
    if isinstance(label, float):
        raise LabelError(f"multiclass label must be a string or integer, got {label!r}")
    return label

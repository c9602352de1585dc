"""Model quality over sliding windows of labeled examples, and concept drift on the error stream.

A window keeps its last ``size`` examples and computes river's metrics over
them when asked (each tick), not on every example: appending is all a labeled
example costs, which is what lets one process keep up with tens of thousands
of labels a second. The metrics are river's own classes, so their definitions
are river's.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from river import metrics as rm

from eddy.contracts.monitoring import DetectorSpec
from eddy.ml.models import class_key

METRICS_BY_TASK: dict[str, dict[str, Any]] = {
    "binary": {"accuracy": rm.Accuracy, "f1": rm.F1, "roc_auc": rm.ROCAUC, "log_loss": rm.LogLoss},
    "multiclass": {"accuracy": rm.Accuracy, "macro_f1": rm.MacroF1, "log_loss": rm.CrossEntropy},
    "regression": {"mae": rm.MAE, "rmse": rm.RMSE, "r2": rm.R2},
}
# Metrics that read the probabilities rather than the decided class.
NEEDS_PROBABILITIES = {"roc_auc", "log_loss"}
# Classes as written in probability maps: the positive class of a binary task is "true" or "1".
POSITIVE_KEYS = ("true", "1")


class QualityWindow:
    """The last ``size`` (label, prediction, probabilities) of one model version, or of one segment of it.

    Examples
    --------
    >>> window = QualityWindow("binary", size=3)
    >>> for y, p in [(True, 0.9), (False, 0.2), (True, 0.4), (True, 0.8)]:
    ...     window.add(y, p > 0.5, {"true": p, "false": 1 - p})
    >>> window.metrics()["accuracy"]  # the last three: right, wrong, right
    0.666...
    """

    def __init__(self, task: str, size: int) -> None:
        self.task = task
        self.examples: deque[tuple[Any, Any, Any]] = deque(maxlen=size)
        self.seen = 0
        self._computed_at = -1
        self._values: dict[str, float] = {}

    def add(self, y: Any, y_pred: Any, probabilities: dict[str, float] | None) -> None:
        self.examples.append((y, y_pred, probabilities))
        self.seen += 1

    def metrics(self) -> dict[str, float]:
        """River's metrics over the window (cached until the next example)."""
        if self._computed_at != self.seen:
            self._values = self._compute()
            self._computed_at = self.seen
        return self._values

    def _compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, cls in METRICS_BY_TASK[self.task].items():
            metric = cls()  # binary metrics take True as the positive class: _as_class maps to it
            updated = False
            for y, y_pred, probabilities in self.examples:
                if y_pred is None or y is None:
                    continue
                if name in NEEDS_PROBABILITIES:
                    proba = self._probabilities(y, probabilities)
                    if proba is None:
                        continue
                    metric.update(_as_class(y, self.task), proba)
                else:
                    metric.update(_as_class(y, self.task), _as_class(y_pred, self.task))
                updated = True
            if updated:
                out[name] = float(metric.get())
        return out

    def _probabilities(self, y: Any, probabilities: dict[str, float] | None) -> Any:
        if not probabilities:
            return None
        if self.task == "binary":
            # river's binary metrics read P(positive) and a boolean truth.
            return next((probabilities[k] for k in POSITIVE_KEYS if k in probabilities), None)
        return probabilities  # multiclass: keyed like _as_class renders the truth


def _as_class(value: Any, task: str) -> Any:
    if task == "regression":
        return float(value)
    key = class_key(value)
    return key in POSITIVE_KEYS if task == "binary" else key


def error_of(task: str, y: Any, y_pred: Any) -> float | None:
    """The error stream concept drift watches: 0/1 for classifiers, absolute error for regression."""
    if y_pred is None or y is None:
        return None
    if task == "regression":
        return abs(float(y) - float(y_pred))
    return 0.0 if class_key(y) == class_key(y_pred) else 1.0


class ConceptWatch:
    """A river drift detector on one model version's error stream.

    Only a rise of the mean error is concept drift: detectors also flag a fall,
    which is the model recovering (online learning adapting) and must not raise
    an alert again. The condition clears after ``resolve_after`` examples
    without a new rise.
    """

    def __init__(self, spec: DetectorSpec, min_examples: int, resolve_after: int) -> None:
        self.detector = spec.build()
        self.spec = spec
        self.min_examples = min_examples
        self.resolve_after = resolve_after
        self.seen = 0
        self.last_rise_at: int | None = None
        self.rises = 0
        self._recent: deque[float] = deque(maxlen=500)

    @property
    def drifting(self) -> bool:
        return self.last_rise_at is not None and self.seen - self.last_rise_at < self.resolve_after

    @property
    def averaged(self) -> int:
        """How many recent errors :attr:`mean_error` averages."""
        return len(self._recent)

    @property
    def mean_error(self) -> float:
        return sum(self._recent) / len(self._recent) if self._recent else 0.0

    def update(self, error: float) -> bool:
        """Feed one error; True when this one revealed a rise."""
        before = getattr(self.detector, "estimation", None)
        self.seen += 1
        self._recent.append(error)
        self.detector.update(error)
        if not self.detector.drift_detected or self.seen < self.min_examples:
            return False
        after = getattr(self.detector, "estimation", None)
        # ADWIN drops the older part of its window on a detection, so its estimate moves the way the
        # error did; detectors without an estimate are judged on the recent errors.
        rose = float(after) > float(before) if before is not None and after is not None else self._rose()
        if not rose:
            return False
        self.last_rise_at = self.seen
        self.rises += 1
        return True

    def _rose(self) -> bool:
        half = len(self._recent) // 2
        if half < 10:
            return False
        recent = list(self._recent)
        return sum(recent[half:]) / (len(recent) - half) > sum(recent[:half]) / half

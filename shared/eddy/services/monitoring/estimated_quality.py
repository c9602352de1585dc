"""One model version's label-free quality: windows of predictions estimated on arrival, realized as labels come.

The estimator (``estimation.py``) is pure arithmetic; this keeps the state around it for one version:

- the calibration set, the version's last ``calibration_window`` labeled (score, label) pairs, refitted
  when a window closes and new labels came since the last fit;
- the current window of predictions, estimated when ``window`` of them arrived (a tumbling window);
- the last :data:`KEPT_WINDOWS` closed windows, each with the event ids it holds, so that a label arriving
  later is counted in its window's realized value, next to the estimate; a window is *settled* once
  :data:`SETTLED_SHARE` of its events are labeled (or when it leaves, with at least ``MIN_CALIBRATION``
  labels): its estimation error is then final;
- the reference: the realized accuracy of the version's first full calibration set, which an estimate
  is compared with for the ``estimated_quality`` alert;
- each segment's last ``window`` predictions, estimated with the version's calibrator.

Examples
--------
>>> from eddy.contracts.monitoring import EstimationSpec
>>> version = VersionEstimates(EstimationSpec(window=100, calibration_window=100))
>>> for i in range(100):                                   # labels first: the calibration set fills
...     version.label(f"old{i}", 0.9 if i % 10 else 0.1, i % 10 != 0, i % 10 != 0)
>>> version.reference
1.0
>>> closed = [version.predict(f"e{i}", 0.9, True, None) for i in range(100)]
>>> window = closed[-1]
>>> round(window.estimated["accuracy"].value, 2), window.realized
(1.0, {})
>>> version.firing(window, open_now=False)                # 1.0 is not below the reference 1.0 - 0.05
False
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eddy.contracts.monitoring import EstimationSpec
from eddy.services.monitoring.estimation import (
    MIN_CALIBRATION,
    Calibrator,
    Estimate,
    calibrator,
    estimate_all,
    realized,
)

# Closed windows kept waiting for their labels: labels later than this many windows are not matched.
KEPT_WINDOWS = 32
# The share of a window's events labeled for its realized value to be final.
SETTLED_SHARE = 0.9
# Segments estimated per version, and the predictions a segment needs before it shows an estimate.
MAX_SEGMENTS = 50
MIN_SEGMENT_PREDICTIONS = 50


@dataclass
class EstimatedWindow:
    """One tumbling window of predictions: its estimate, and its realized metrics as far as labels came."""

    index: int
    closed_at_ms: int
    estimated: dict[str, Estimate]
    predictions: dict[str, tuple[float, bool]]  # event id -> (score, answered true)
    labels: dict[str, bool] = field(default_factory=dict)
    realized: dict[str, float] = field(default_factory=dict)
    realized_from: int = 0  # labels the realized metrics were computed from
    settled: bool = False

    @property
    def labeled_share(self) -> float:
        return len(self.labels) / max(1, len(self.predictions))

    def error(self, metric: str = "accuracy") -> float | None:
        """Estimate minus realized value, once both exist."""
        if metric not in self.estimated or metric not in self.realized:
            return None
        return self.estimated[metric].value - self.realized[metric]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "closed_at_ms": self.closed_at_ms,
            "n": len(self.predictions),
            "estimated": {m: _estimate_json(e) for m, e in self.estimated.items()},
            "realized": dict(self.realized),
            "labeled": len(self.labels),
            "settled": self.settled,
        }


class VersionEstimates:
    """The estimate state of one model version (see the module docstring)."""

    def __init__(self, spec: EstimationSpec) -> None:
        self.spec = spec
        self.calibration: deque[tuple[float, bool, bool]] = deque(maxlen=spec.calibration_window)
        self.calibrator: Calibrator | None = None
        self._labels_since_fit = 0
        self.reference: float | None = None
        self.current: list[tuple[str, float, bool]] = []
        self.windows: OrderedDict[int, EstimatedWindow] = OrderedDict()
        self._window_of: dict[str, int] = {}
        self.closed = 0
        self.segments: dict[str, deque[tuple[float, bool]]] = {}
        # Each segment's estimate as of the last refresh(): the gauges and the dashboard read the same one.
        self.by_segment: dict[str, dict[str, Estimate]] = {}
        self.settled: list[EstimatedWindow] = []  # windows settled since the caller last took them

    @property
    def latest(self) -> EstimatedWindow | None:
        return next(reversed(self.windows.values()), None) if self.windows else None

    def predict(self, event_id: str, score: float, answered_true: bool, segment: str | None,
                at_ms: int = 0) -> EstimatedWindow | None:  # fmt: skip
        """One served prediction; the window it closed, estimated, if it closed one (None without a calibrator)."""
        if segment is not None:
            recent = self.segments.get(segment)
            if recent is None and len(self.segments) < MAX_SEGMENTS:
                recent = self.segments[segment] = deque(maxlen=self.spec.window)
            if recent is not None:
                recent.append((score, answered_true))
        self.current.append((event_id, score, answered_true))
        if len(self.current) < self.spec.window:
            return None
        batch, self.current = self.current, []
        fitted = self._fitted()
        if fitted is None:
            return None
        scores = np.fromiter((s for _, s, _ in batch), float, len(batch))
        predicted = np.fromiter((t for _, _, t in batch), bool, len(batch))
        estimated = estimate_all(fitted.predict(scores), scores, predicted)
        window = EstimatedWindow(self.closed, at_ms, estimated, {e: (s, t) for e, s, t in batch})
        self.closed += 1
        self.windows[window.index] = window
        self._window_of.update((e, window.index) for e in window.predictions)
        while len(self.windows) > KEPT_WINDOWS:
            self._leave(self.windows.popitem(last=False)[1])
        return window

    def label(self, event_id: str, score: float, answered_true: bool, truth: bool) -> None:
        """One labeled example of this version: into the calibration set, and into its window's realized value."""
        self.calibration.append((score, answered_true, truth))
        self._labels_since_fit += 1
        if self.reference is None and len(self.calibration) == self.calibration.maxlen:
            self.reference = self._calibration_accuracy()
        index = self._window_of.get(event_id)
        window = self.windows.get(index) if index is not None else None
        if window is None or event_id in window.labels:
            return
        window.labels[event_id] = truth
        if not window.settled and window.labeled_share >= SETTLED_SHARE:
            self._settle(window)

    def firing(self, window: EstimatedWindow, open_now: bool) -> bool | None:
        """Whether the ``estimated_quality`` alert should be firing after ``window``; None before a reference.

        It fires when the estimated accuracy is more than ``threshold`` below the reference, and resolves
        once the estimate is back within half of that, so an estimate hovering at the line does not flap.
        """
        accuracy = window.estimated.get("accuracy")
        if self.reference is None or accuracy is None:
            return None
        line = self.reference - self.spec.threshold * (0.5 if open_now else 1.0)
        return accuracy.value < line

    def refresh(self) -> None:
        """Once per tick, not per record: the realized metrics of windows that got labels, and each segment's
        estimate over its last ``window`` predictions with the version's calibrator."""
        for window in self.windows.values():
            if len(window.labels) != window.realized_from:
                self._realize(window)
        self.by_segment = self._segment_estimates()

    def _segment_estimates(self) -> dict[str, dict[str, Estimate]]:
        if self.calibrator is None:
            return {}
        out = {}
        for segment, recent in sorted(self.segments.items()):
            if len(recent) < MIN_SEGMENT_PREDICTIONS:
                continue
            scores = np.fromiter((s for s, _ in recent), float, len(recent))
            predicted = np.fromiter((t for _, t in recent), bool, len(recent))
            out[segment] = estimate_all(self.calibrator.predict(scores), scores, predicted)
        return out

    def to_json(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "calibration": self.spec.calibration,
            "calibration_labels": len(self.calibration),
            "min_labels": MIN_CALIBRATION,
            "window": self.spec.window,
            "calibration_window": self.spec.calibration_window,
            "reference_accuracy": self.reference,
            "threshold": self.spec.threshold,
            "current": {m: _estimate_json(e) for m, e in latest.estimated.items()} if latest else None,
            "segments": {s: {m: _estimate_json(e) for m, e in est.items()} for s, est in self.by_segment.items()},
            "windows": [w.to_json() for w in self.windows.values()],
        }

    def _fitted(self) -> Calibrator | None:
        if len(self.calibration) < MIN_CALIBRATION:
            return None
        if self.calibrator is None or self._labels_since_fit:
            scores = np.fromiter((s for s, _, _ in self.calibration), float, len(self.calibration))
            truths = np.fromiter((t for _, _, t in self.calibration), bool, len(self.calibration))
            self.calibrator = calibrator(self.spec.calibration).fit(scores, truths)
            self._labels_since_fit = 0
        return self.calibrator

    def _calibration_accuracy(self) -> float:
        return sum(answered == truth for _, answered, truth in self.calibration) / len(self.calibration)

    def _realize(self, window: EstimatedWindow) -> None:
        ids = list(window.labels)
        scores = [window.predictions[e][0] for e in ids]
        predicted = [window.predictions[e][1] for e in ids]
        window.realized = realized(scores, predicted, [window.labels[e] for e in ids])
        window.realized_from = len(ids)

    def _settle(self, window: EstimatedWindow) -> None:
        self._realize(window)
        window.settled = True
        self.settled.append(window)

    def _leave(self, window: EstimatedWindow) -> None:
        for event_id in window.predictions:
            self._window_of.pop(event_id, None)
        if not window.settled and len(window.labels) >= MIN_CALIBRATION:
            self._settle(window)


def _estimate_json(estimate: Estimate) -> dict[str, float]:
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high, "n": estimate.n}

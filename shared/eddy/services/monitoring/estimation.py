"""Accuracy before the labels arrive: confidence-based performance estimation (CBPE) for binary classifiers.

A calibrated probability says how often the model is right: of the events scored 0.8 for ``true``, 80% are
``true``. So the expected accuracy of a window of predictions needs no label: each prediction is right with
probability ``p`` when it answers ``true`` and ``1 - p`` when it answers ``false``, and the window's accuracy
is the mean of those. The scores a model gives are rarely calibrated, so a calibrator (isotonic regression,
pool-adjacent-violators) is fitted on the most recent labeled window and applied to the unlabeled one.

The band is the sampling spread of that mean (the accuracy is a sum of independent Bernoulli trials with the
calibrated probabilities): ``±1.96`` standard deviations. It does not include the calibrator's own error.

What this cannot see: a change of the label rule while the inputs and scores stay put (concept drift). The
calibrator learned on the old rule then vouches for scores that are no longer right; only labels show it.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> p = rng.uniform(0, 1, 20_000)                  # calibrated scores of the class ``true``
>>> labels = rng.uniform(0, 1, 20_000) < p
>>> estimate = estimate_accuracy(p, p >= 0.5)
>>> realized = float(np.mean((p >= 0.5) == labels))
>>> round(estimate.value, 2), estimate.low <= realized <= estimate.high
(0.75, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Z_95 = 1.96
# Fewer labeled examples than this give a calibrator too coarse to trust: no estimate then.
MIN_CALIBRATION = 100


@dataclass(frozen=True)
class Estimate:
    """An estimated metric over ``n`` predictions, with its 95% band."""

    value: float
    low: float
    high: float
    n: int


def estimate_accuracy(calibrated: npt.ArrayLike, predicted: npt.ArrayLike) -> Estimate:
    """The expected accuracy of predictions ``predicted`` (True: answered ``true``) with calibrated ``P(true)``.

    >>> round(estimate_accuracy([0.9, 0.2, 0.6], [True, False, True]).value, 4)  # (0.9 + 0.8 + 0.6) / 3
    0.7667
    """
    p = np.asarray(calibrated, dtype=float)
    answered_true = np.asarray(predicted, dtype=bool)
    if p.shape != answered_true.shape or p.ndim != 1:
        raise ValueError(f"scores {p.shape} and predictions {answered_true.shape} must be two equal 1-d arrays")
    if not len(p):
        raise ValueError("no predictions to estimate over")
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError("calibrated scores must be probabilities in [0, 1]")
    right = np.where(answered_true, p, 1.0 - p)
    value = float(right.mean())
    spread = Z_95 * float(np.sqrt(np.sum(right * (1.0 - right)))) / len(right)
    return Estimate(value, max(0.0, value - spread), min(1.0, value + spread), len(right))


class IsotonicCalibrator:
    """A monotone map from a model's score to the observed rate of ``true``, fitted by pool-adjacent-violators.

    >>> calibrator = IsotonicCalibrator().fit([0.1, 0.4, 0.6, 0.9], [False, True, False, True])
    >>> [round(float(x), 2) for x in calibrator.predict([0.1, 0.5, 0.9])]
    [0.0, 0.5, 1.0]
    """

    def __init__(self) -> None:
        self.thresholds: npt.NDArray[np.float64] = np.empty(0)
        self.rates: npt.NDArray[np.float64] = np.empty(0)

    def fit(self, scores: npt.ArrayLike, labels: npt.ArrayLike) -> IsotonicCalibrator:
        x = np.asarray(scores, dtype=float)
        y = np.asarray(labels, dtype=float)
        if x.shape != y.shape or x.ndim != 1 or not len(x):
            raise ValueError("scores and labels must be two equal, non-empty 1-d arrays")
        # Equal scores are one point: their labels pooled first, whatever order they came in.
        unique, inverse = np.unique(x, return_inverse=True)
        label_sums = np.bincount(inverse, weights=y)
        label_counts = np.bincount(inverse)
        # Blocks of (sum of labels, count, highest score): merged while a block's rate exceeds the next one's.
        sums: list[float] = []
        counts: list[int] = []
        tops: list[float] = []
        for score, total, count in zip(unique.tolist(), label_sums.tolist(), label_counts.tolist(), strict=True):
            sums.append(total)
            counts.append(count)
            tops.append(score)
            while len(sums) > 1 and sums[-2] * counts[-1] >= sums[-1] * counts[-2]:
                merged_sum, merged_count, merged_top = sums.pop(), counts.pop(), tops.pop()
                sums[-1] += merged_sum
                counts[-1] += merged_count
                tops[-1] = merged_top
        self.thresholds = np.asarray(tops)
        self.rates = np.asarray(sums) / np.asarray(counts)
        return self

    def predict(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The calibrated ``P(true)`` of each score: the rate of the block the score falls in."""
        if not len(self.rates):
            raise ValueError("the calibrator is not fitted")
        index = np.searchsorted(self.thresholds, np.asarray(scores, dtype=float), side="left")
        return np.asarray(self.rates[np.minimum(index, len(self.rates) - 1)], dtype=float)


def estimate_window(
    labeled_scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    unlabeled_scores: npt.ArrayLike,
    threshold: float = 0.5,
) -> Estimate | None:
    """The estimated accuracy of the unlabeled window, calibrated on the labeled one; None with too few labels.

    Scores are the model's ``P(true)``; a prediction answers ``true`` at ``threshold`` or above.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> true_p = rng.uniform(0, 1, 30_000)
    >>> overconfident = np.clip(0.5 + 1.6 * (true_p - 0.5), 0, 1)   # what an overconfident model would say
    >>> labels = rng.uniform(0, 1, 30_000) < true_p
    >>> found = estimate_window(overconfident[:10_000], labels[:10_000], overconfident[10_000:])
    >>> realized = float(np.mean((overconfident[10_000:] >= 0.5) == labels[10_000:]))
    >>> abs(found.value - realized) < 0.01
    True
    """
    calibration = np.asarray(labeled_scores, dtype=float)
    if len(calibration) < MIN_CALIBRATION:
        return None
    unlabeled = np.asarray(unlabeled_scores, dtype=float)
    calibrated = IsotonicCalibrator().fit(calibration, labels).predict(unlabeled)
    return estimate_accuracy(calibrated, unlabeled >= threshold)

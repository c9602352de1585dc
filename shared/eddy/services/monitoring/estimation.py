"""Accuracy before the labels arrive: confidence-based performance estimation (CBPE) for binary classifiers.

A calibrated probability says how often the model is right: of the events scored 0.8 for ``true``, 80% are
``true``. So the expected accuracy of a window of predictions needs no label: each prediction is right with
probability ``p`` when it answers ``true`` and ``1 - p`` when it answers ``false``, and the window's accuracy
is the mean of those. The scores a model gives are rarely calibrated, so a calibrator (isotonic regression,
pool-adjacent-violators) is fitted on the most recent labeled window and applied to the unlabeled one.

F1 and ROC AUC are estimated the same way (NannyML's CBPE): the calibrated probabilities stand in for the
labels, as expected true and false positives, and as the expected ROC curve. Accuracy's band is the
sampling spread of that mean (a sum of independent Bernoulli trials with the calibrated probabilities),
``±1.96`` standard deviations; F1's and ROC AUC's are the 2.5th and 97.5th percentiles of the metric over
labels drawn from those probabilities. No band includes the calibrator's own error.

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
# Label vectors drawn for the F1 and ROC AUC bands; seeded, so an estimate is a function of its inputs.
BAND_DRAWS = 200
BINS = 10


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
    p, answered_true = _checked(calibrated, predicted)
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
        x, y = _fit_inputs(scores, labels)
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


class BinningCalibrator:
    """Equal-count bins of the score, each mapped to the rate of ``true`` in it: coarser than isotonic, never
    overfitting a few extreme scores.

    >>> calibrator = BinningCalibrator(bins=2).fit([0.1, 0.2, 0.7, 0.9], [False, True, True, True])
    >>> [float(x) for x in calibrator.predict([0.0, 0.15, 0.8, 1.0])]
    [0.5, 0.5, 1.0, 1.0]
    """

    def __init__(self, bins: int = BINS) -> None:
        self.bins = bins
        self.edges: npt.NDArray[np.float64] = np.empty(0)
        self.rates: npt.NDArray[np.float64] = np.empty(0)

    def fit(self, scores: npt.ArrayLike, labels: npt.ArrayLike) -> BinningCalibrator:
        x, y = _fit_inputs(scores, labels)
        self.edges = np.unique(np.quantile(x, np.linspace(0, 1, self.bins + 1)[1:-1]))
        index = np.searchsorted(self.edges, x, side="right")
        counts = np.bincount(index, minlength=len(self.edges) + 1)
        sums = np.bincount(index, weights=y, minlength=len(self.edges) + 1)
        # An empty bin (all scores tied at an edge) takes the overall rate.
        self.rates = np.where(counts > 0, sums / np.maximum(counts, 1), y.mean())
        return self

    def predict(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        if not len(self.rates):
            raise ValueError("the calibrator is not fitted")
        return np.asarray(self.rates[np.searchsorted(self.edges, np.asarray(scores, dtype=float), side="right")])


class ScoresAsProbabilities:
    """No calibration: the model's scores are taken to be calibrated already (``calibration: none``).

    >>> [float(x) for x in ScoresAsProbabilities().fit([0.3], [True]).predict([0.3, 1.2])]
    [0.3, 1.0]
    """

    def fit(self, scores: npt.ArrayLike, labels: npt.ArrayLike) -> ScoresAsProbabilities:
        return self

    def predict(self, scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)


Calibrator = IsotonicCalibrator | BinningCalibrator | ScoresAsProbabilities


def calibrator(method: str) -> Calibrator:
    """An unfitted calibrator by its contract name (``monitoring.estimated_quality.calibration``).

    >>> type(calibrator("binning")).__name__
    'BinningCalibrator'
    """
    if method == "isotonic":
        return IsotonicCalibrator()
    if method == "binning":
        return BinningCalibrator()
    if method == "none":
        return ScoresAsProbabilities()
    raise ValueError(f"calibration {method!r} is not one of isotonic, binning, none")


def estimate_f1(calibrated: npt.ArrayLike, predicted: npt.ArrayLike) -> Estimate | None:
    """The expected F1 of the class ``true``: expected true positives, false positives and false negatives.

    None when no prediction answered ``true`` and none is expected to be ``true`` (F1 is undefined then).

    >>> round(estimate_f1([0.9, 0.8, 0.3, 0.1], [True, True, False, False]).value, 3)  # 2*1.7/(3.4+0.3+0.4)
    0.829
    """
    p, answered_true = _checked(calibrated, predicted)
    tp = float(np.sum(p[answered_true]))
    fp = float(np.sum(1.0 - p[answered_true]))
    fn = float(np.sum(p[~answered_true]))
    if 2 * tp + fp + fn == 0:
        return None
    draws = _draws(p)
    tps = draws[:, answered_true].sum(axis=1)
    fps = answered_true.sum() - tps
    fns = draws[:, ~answered_true].sum(axis=1)
    denominators = 2 * tps + fps + fns
    f1s = np.where(denominators > 0, 2 * tps / np.maximum(denominators, 1), 0.0)
    return _banded(2 * tp / (2 * tp + fp + fn), f1s, len(p))


def estimate_roc_auc(calibrated: npt.ArrayLike, scores: npt.ArrayLike) -> Estimate | None:
    """The expected ROC AUC of the model's ``scores``, with the calibrated probabilities as expected labels.

    None when the window is expected to hold (almost) one class only.

    >>> round(estimate_roc_auc([0.9, 0.6, 0.4, 0.1], [0.9, 0.6, 0.4, 0.1]).value, 3)
    0.889
    """
    p = _probabilities(calibrated)
    s = np.asarray(scores, dtype=float)
    if s.shape != p.shape:
        raise ValueError(f"scores {s.shape} and calibrated probabilities {p.shape} must have one shape")
    ranks = _ranks(s)
    value = _auc_weighted(ranks, p)
    if value is None:
        return None
    draws = _draws(p)
    positives = draws.sum(axis=1)
    negatives = len(p) - positives
    both = (positives > 0) & (negatives > 0)
    if not both.any():
        return None
    aucs = (draws[both] @ ranks - positives[both] * (positives[both] + 1) / 2) / (positives[both] * negatives[both])
    return _banded(value, aucs, len(p))


def realized(scores: npt.ArrayLike, predicted: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, float]:
    """Accuracy, F1 and ROC AUC of labeled predictions, by the definitions the estimates use.

    >>> realized([0.9, 0.6, 0.4, 0.1], [True, True, False, False], [True, False, True, False])
    {'accuracy': 0.5, 'f1': 0.5, 'roc_auc': 0.75}
    """
    s = np.asarray(scores, dtype=float)
    answered_true = np.asarray(predicted, dtype=bool)
    y = np.asarray(labels, dtype=bool)
    if not len(y):
        return {}
    out = {"accuracy": float(np.mean(answered_true == y))}
    tp = int(np.sum(answered_true & y))
    denominator = 2 * tp + int(np.sum(answered_true & ~y)) + int(np.sum(~answered_true & y))
    if denominator:
        out["f1"] = 2 * tp / denominator
    positives = int(y.sum())
    if 0 < positives < len(y):
        out["roc_auc"] = float(
            (_ranks(s)[y].sum() - positives * (positives + 1) / 2) / (positives * (len(y) - positives))
        )
    return out


def estimate_all(calibrated: npt.ArrayLike, scores: npt.ArrayLike, predicted: npt.ArrayLike) -> dict[str, Estimate]:
    """Every metric that can be estimated for the window (accuracy always; F1 and ROC AUC where defined)."""
    out = {"accuracy": estimate_accuracy(calibrated, predicted)}
    f1 = estimate_f1(calibrated, predicted)
    if f1 is not None:
        out["f1"] = f1
    auc = estimate_roc_auc(calibrated, scores)
    if auc is not None:
        out["roc_auc"] = auc
    return out


def _probabilities(calibrated: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Calibrated scores as a non-empty 1-d array of probabilities, or a ValueError saying what is wrong."""
    p = np.asarray(calibrated, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"calibrated scores {p.shape} must be a 1-d array")
    if not len(p):
        raise ValueError("no predictions to estimate over")
    if np.any((p < 0) | (p > 1)) or not np.all(np.isfinite(p)):
        raise ValueError("calibrated scores must be probabilities in [0, 1]")
    return p


def _checked(
    calibrated: npt.ArrayLike, predicted: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Calibrated scores and the answers given (True: ``true``), checked to pair up one to one."""
    p = np.asarray(calibrated, dtype=float)
    answered_true = np.asarray(predicted, dtype=bool)
    if p.shape != answered_true.shape or p.ndim != 1:
        raise ValueError(f"scores {p.shape} and predictions {answered_true.shape} must be two equal 1-d arrays")
    return _probabilities(p), answered_true


def _fit_inputs(
    scores: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """A calibrator's training data: scores and labels (1.0: ``true``) as two equal, non-empty 1-d arrays."""
    x = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or not len(x):
        raise ValueError("scores and labels must be two equal, non-empty 1-d arrays")
    return x, y


def _draws(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``BAND_DRAWS`` label vectors drawn from the calibrated probabilities (1.0: ``true``)."""
    rng = np.random.default_rng(len(p))
    return (rng.random((BAND_DRAWS, len(p))) < p).astype(float)


def _banded(value: float, draws: npt.NDArray[np.float64], n: int) -> Estimate:
    low, high = np.percentile(draws, [2.5, 97.5])
    return Estimate(float(value), float(min(low, value)), float(max(high, value)), n)


def _ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1-based ranks, ties averaged (the Mann-Whitney form of ROC AUC)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    _, first, counts = np.unique(ordered, return_index=True, return_counts=True)
    for start, count in zip(first[counts > 1], counts[counts > 1], strict=True):
        ranks[order[start : start + count]] = start + (count + 1) / 2
    return ranks


def _auc_weighted(ranks: npt.NDArray[np.float64], p: npt.NDArray[np.float64]) -> float | None:
    """The expected ROC curve's area: each prediction counts ``p`` as a positive and ``1 - p`` as a negative."""
    positives, negatives = float(p.sum()), float((1.0 - p).sum())
    if positives < 1 or negatives < 1:
        return None
    # Sum over pairs of p_i (1 - p_j) [rank_i > rank_j], ties half: by ranks, in one pass.
    order = np.argsort(ranks, kind="mergesort")
    r, w = ranks[order], p[order]
    # Within a tie, half of the tied negatives count.
    _, first, counts = np.unique(r, return_index=True, return_counts=True)
    tied_negatives = np.add.reduceat(1.0 - w, first)
    below_tie = np.repeat(np.cumsum(tied_negatives) - tied_negatives, counts)
    half_tie = np.repeat(tied_negatives, counts) / 2
    pairs = float(np.sum(w * (below_tie + half_tie)))
    # Minus each prediction paired with itself (half, as a tie): p_i (1 - p_i) / 2.
    pairs -= float(np.sum(w * (1.0 - w))) / 2
    return pairs / (positives * negatives - float(np.sum(w * (1.0 - w))))


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

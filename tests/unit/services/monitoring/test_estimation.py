"""CBPE against known calibrated cases: the estimate tracks the realized accuracy without a label."""

from __future__ import annotations

import numpy as np
import pytest
from eddy.services.monitoring.estimation import (
    MIN_CALIBRATION,
    BinningCalibrator,
    IsotonicCalibrator,
    calibrator,
    estimate_accuracy,
    estimate_all,
    estimate_window,
    realized,
)
from river import metrics


@pytest.mark.parametrize("seed", range(5))
def test_calibrated_scores_estimate_the_realized_accuracy_within_the_band(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 2, 5_000)
    labels = rng.uniform(0, 1, 5_000) < p
    estimate = estimate_accuracy(p, p >= 0.5)
    realized = float(np.mean((p >= 0.5) == labels))
    assert estimate.low <= realized <= estimate.high
    assert estimate.high - estimate.low < 0.03


def test_a_covariate_shift_toward_uncertain_scores_lowers_the_estimate_before_any_label() -> None:
    rng = np.random.default_rng(3)
    reference = rng.uniform(0, 1, 10_000)  # scores spread out: an easy population
    shifted = rng.uniform(0.3, 0.7, 10_000)  # the inputs moved to where the model is unsure
    labels = rng.uniform(0, 1, 10_000) < reference
    before = estimate_window(reference, labels, reference)
    after = estimate_window(reference, labels, shifted)
    assert before is not None and after is not None
    assert before.value - after.value > 0.10
    realized = float(np.mean((shifted >= 0.5) == (rng.uniform(0, 1, 10_000) < shifted)))
    assert abs(after.value - realized) < 0.02


def test_a_concept_drift_with_unchanged_scores_is_not_seen() -> None:
    """The label rule flips; scores do not move: a label-free estimate stays where it was (said in its docs)."""
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, 10_000)
    labels = rng.uniform(0, 1, 10_000) < p
    estimate = estimate_window(p[:5_000], labels[:5_000], p[5_000:])
    flipped_realized = float(np.mean((p[5_000:] >= 0.5) == ~labels[5_000:]))
    assert estimate is not None and estimate.value > 0.7 and flipped_realized < 0.3


def test_the_calibrator_is_monotone_and_fixes_a_miscalibrated_model() -> None:
    rng = np.random.default_rng(5)
    true_p = rng.uniform(0, 1, 20_000)
    said = true_p**3  # a model that underrates ``true``
    labels = rng.uniform(0, 1, 20_000) < true_p
    calibrated = IsotonicCalibrator().fit(said[:10_000], labels[:10_000]).predict(np.sort(said[10_000:]))
    assert np.all(np.diff(calibrated) >= 0)
    raw = estimate_accuracy(said[10_000:], said[10_000:] >= 0.5).value
    fixed = estimate_window(said[:10_000], labels[:10_000], said[10_000:])
    realized = float(np.mean((said[10_000:] >= 0.5) == labels[10_000:]))
    assert fixed is not None and abs(fixed.value - realized) < 0.015 < abs(raw - realized)


def test_too_few_labels_give_no_estimate_and_bad_input_a_clear_error() -> None:
    assert estimate_window([0.5] * (MIN_CALIBRATION - 1), [True] * (MIN_CALIBRATION - 1), [0.5]) is None
    with pytest.raises(ValueError, match="probabilities"):
        estimate_accuracy([1.5], [True])
    with pytest.raises(ValueError, match="no predictions"):
        estimate_accuracy([], [])
    with pytest.raises(ValueError, match="not fitted"):
        IsotonicCalibrator().predict([0.5])


def test_the_bands_of_accuracy_f1_and_roc_auc_hold_the_realized_value_about_95_times_in_100() -> None:
    inside = {"accuracy": 0, "f1": 0, "roc_auc": 0}
    runs = 80
    for seed in range(runs):
        rng = np.random.default_rng(100 + seed)
        p = rng.beta(2, 3, 1_000)
        labels = rng.uniform(0, 1, 1_000) < p
        estimated, truth = estimate_all(p, p, p >= 0.5), realized(p, p >= 0.5, labels)
        for metric in inside:
            inside[metric] += estimated[metric].low <= truth[metric] <= estimated[metric].high
    # 95% bands: 76 of 80 expected; below 68 would be a band far too narrow (binomial, p < 0.001).
    assert all(count >= 68 for count in inside.values()), inside


def test_realized_metrics_are_rivers() -> None:
    rng = np.random.default_rng(5)
    scores = np.round(rng.uniform(0, 1, 500), 2)  # ties, as real scores have
    labels = rng.uniform(0, 1, 500) < scores
    ours = realized(scores, scores >= 0.5, labels)
    f1, accuracy = metrics.F1(), metrics.Accuracy()
    for score, label in zip(scores, labels, strict=True):
        f1.update(bool(label), bool(score >= 0.5))
        accuracy.update(bool(label), bool(score >= 0.5))
    assert ours["accuracy"] == pytest.approx(accuracy.get()) and ours["f1"] == pytest.approx(f1.get())
    # River's ROCAUC approximates with thresholds; the rank form is exact, so it is compared by hand.
    positives, negatives = scores[labels], scores[~labels]
    pairs = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    assert ours["roc_auc"] == pytest.approx(pairs / (len(positives) * len(negatives)))


@pytest.mark.parametrize("method", ["isotonic", "binning", "none"])
def test_every_calibration_method_estimates_a_calibrated_model_well(method: str) -> None:
    rng = np.random.default_rng(11)
    p = rng.uniform(0, 1, 6_000)
    labels = rng.uniform(0, 1, 6_000) < p
    fitted = calibrator(method).fit(p[:3_000], labels[:3_000])
    estimate = estimate_accuracy(fitted.predict(p[3_000:]), p[3_000:] >= 0.5)
    assert abs(estimate.value - float(np.mean((p[3_000:] >= 0.5) == labels[3_000:]))) < 0.02


def test_binning_rates_are_monotone_on_monotone_data_and_unknown_methods_are_refused() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, 4_000)
    fitted = BinningCalibrator().fit(x, rng.uniform(0, 1, 4_000) < x)
    assert np.all(np.diff(fitted.rates) > -0.05)
    with pytest.raises(ValueError, match="platt"):
        calibrator("platt")

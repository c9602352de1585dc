"""CBPE against known calibrated cases: the estimate tracks the realized accuracy without a label."""

from __future__ import annotations

import numpy as np
import pytest
from eddy.services.monitoring.estimation import (
    MIN_CALIBRATION,
    IsotonicCalibrator,
    estimate_accuracy,
    estimate_window,
)


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

import math
import random

import pytest
from eddy.services.retraining.stats import EXACT_BELOW, mcnemar, paired_accuracy, paired_errors
from scipy import stats as sps


def test_exact_mcnemar_is_the_binomial_test_on_discordant_pairs() -> None:
    for b, c in [(0, 5), (3, 9), (12, 4), (20, 20)]:
        assert b + c < EXACT_BELOW
        two = mcnemar(b, c).p_value
        assert two == pytest.approx(sps.binomtest(c, b + c, 0.5).pvalue)
        greater = mcnemar(b, c, alternative="greater").p_value
        assert greater == pytest.approx(sps.binomtest(c, b + c, 0.5, alternative="greater").pvalue)
        # One-sided in the direction of the data is at most the two-sided p.
        if c > b:
            assert greater <= two


def test_large_counts_use_corrected_chi_square() -> None:
    r = mcnemar(100, 140, n=2000)
    assert r.method == "chi2"
    assert r.statistic == pytest.approx((40 - 1) ** 2 / 240)
    assert r.p_value == pytest.approx(sps.chi2.sf(r.statistic, 1))
    assert r.effect == pytest.approx(0.02)
    one = mcnemar(100, 140, n=2000, alternative="greater")
    assert one.p_value == pytest.approx(r.p_value / 2, rel=1e-6)  # the signed root of the same statistic
    assert mcnemar(100, 140, alternative="less").p_value > 0.99


def test_mcnemar_symmetry_and_counts() -> None:
    assert mcnemar(7, 2, alternative="greater").p_value == pytest.approx(mcnemar(2, 7, alternative="less").p_value)
    r = paired_accuracy([True] * 10 + [False] * 5, [True] * 8 + [False] * 2 + [True] * 5)
    assert (r.counts["b"], r.counts["c"], r.n) == (2.0, 5.0, 15)
    with pytest.raises(ValueError):
        mcnemar(-1, 2)
    with pytest.raises(ValueError):
        paired_accuracy([True], [True, False])


def test_paired_errors_detects_a_better_regressor_and_not_noise() -> None:
    rng = random.Random(3)
    truth = [rng.gauss(0, 1) for _ in range(300)]
    good = [abs(rng.gauss(0, 0.5)) for _ in truth]
    bad = [abs(rng.gauss(0, 1.0)) for _ in truth]
    better = paired_errors(bad, good, "greater")
    assert better.p_value < 1e-6 and better.effect > 0.2
    assert paired_errors(bad, good, "less").p_value > 0.99
    twin = [abs(rng.gauss(0, 1.0)) for _ in truth]
    assert paired_errors(bad, twin, "greater").p_value > 0.01
    for method in ("t", "wilcoxon"):
        r = paired_errors(bad, good, "greater", method=method)  # type: ignore[arg-type]
        assert r.method == method and r.p_value < 1e-6


def test_paired_errors_degenerate_cases() -> None:
    assert paired_errors([], []).p_value == 1.0
    assert paired_errors([1.0], [0.0]).p_value == 1.0
    shifted = paired_errors([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], "greater")
    assert shifted.p_value == 0.0 and shifted.effect == 1.0 and math.isinf(shifted.statistic)
    assert paired_errors([2.0, 3.0], [1.0, 2.0], "less").p_value == 1.0

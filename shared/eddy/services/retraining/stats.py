"""Paired tests: is one model better than another on the same events?

Both models answer every event, so their outcomes pair up by event and the
test looks only at how they differ, which is far more sensitive than comparing
two independent accuracies.

- :func:`mcnemar` for classification: of the pairs where exactly one model is
  right, is one of them right more often than chance?
- :func:`paired_errors` for regression: is one model's absolute error smaller
  on average (paired t-test) or typically (Wilcoxon signed-rank)?

Alternatives are named from the candidate's side: ``"greater"`` asks whether
the candidate is better than the reference, ``"less"`` whether it is worse.

Examples
--------
A challenger right on 30 events where the champion was wrong, and wrong on 8
where the champion was right, out of 300:

>>> result = mcnemar(b=8, c=30, n=300, alternative="greater")
>>> result.method, round(result.effect, 4), result.p_value < 0.001
('exact', 0.0733, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from scipy import stats as sps

Alternative = Literal["two-sided", "greater", "less"]

# Below this many discordant pairs the chi-square approximation is poor: use the exact binomial test.
EXACT_BELOW = 50


@dataclass(frozen=True)
class PairedResult:
    """A paired test's outcome.

    ``effect`` is the candidate's advantage in the metric's own unit: accuracy
    points (candidate - reference) for McNemar, the reduction of the mean
    absolute error (reference - candidate) for regression; positive means the
    candidate is better.
    """

    method: str
    alternative: str
    n: int
    effect: float
    p_value: float
    statistic: float
    counts: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(b: int, c: int, n: int | None = None, alternative: Alternative = "two-sided") -> PairedResult:
    """McNemar's test on the discordant pairs.

    Parameters
    ----------
    b
        Pairs where the reference is right and the candidate wrong.
    c
        Pairs where the reference is wrong and the candidate right.
    n
        All pairs (for the effect size); ``b + c`` when not given.
    alternative
        ``"greater"``: the candidate is right more often (``c > b``).

    Returns
    -------
    PairedResult
        Exact binomial test when ``b + c < EXACT_BELOW``, else chi-square with
        continuity correction (its one-sided form: the normal deviate).

    Examples
    --------
    >>> mcnemar(0, 0).p_value
    1.0
    >>> r = mcnemar(2, 10, n=100, alternative="greater")
    >>> r.method, r.effect, round(r.p_value, 4)
    ('exact', 0.08, 0.0193)
    >>> round(mcnemar(10, 2, n=100, alternative="greater").p_value, 4)
    0.9968
    >>> r = mcnemar(40, 70, n=1000)
    >>> r.method, round(r.statistic, 3), round(r.p_value, 4)
    ('chi2', 7.645, 0.0057)
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be >= 0")
    discordant = b + c
    total = n if n is not None else discordant
    effect = (c - b) / total if total else 0.0
    counts = {"b": float(b), "c": float(c), "n": float(total)}
    if discordant == 0:
        return PairedResult("exact", alternative, total, effect, 1.0, 0.0, counts)
    if discordant < EXACT_BELOW:
        # Under the null each discordant pair favours either model with probability 1/2.
        p = sps.binomtest(c, discordant, 0.5, alternative=alternative).pvalue
        return PairedResult("exact", alternative, total, effect, _clip(p), float(c), counts)
    chi2 = (abs(b - c) - 1) ** 2 / discordant
    if alternative == "two-sided":
        p = sps.chi2.sf(chi2, 1)
    else:
        # The signed root of the corrected statistic is a normal deviate.
        sign = 1 if alternative == "greater" else -1
        z = (sign * (c - b) - 1) / math.sqrt(discordant)
        p = sps.norm.sf(z)
    return PairedResult("chi2", alternative, total, effect, _clip(p), chi2, counts)


def paired_accuracy(
    reference_correct: Sequence[bool], candidate_correct: Sequence[bool], alternative: Alternative = "two-sided"
) -> PairedResult:
    """McNemar from per-event correctness of two models on the same events.

    >>> r = paired_accuracy([True, True, False, False], [True, False, True, True], "greater")
    >>> r.counts["b"], r.counts["c"], r.effect
    (1.0, 2.0, 0.25)
    """
    if len(reference_correct) != len(candidate_correct):
        raise ValueError("paired outcomes must have the same length")
    b = sum(1 for r, k in zip(reference_correct, candidate_correct, strict=True) if r and not k)
    c = sum(1 for r, k in zip(reference_correct, candidate_correct, strict=True) if k and not r)
    return mcnemar(b, c, len(reference_correct), alternative)


def paired_errors(
    reference_errors: Sequence[float],
    candidate_errors: Sequence[float],
    alternative: Alternative = "two-sided",
    method: Literal["t", "wilcoxon"] = "t",
) -> PairedResult:
    """Compare two regressors' absolute errors on the same events.

    The paired t-test (default) tests the mean of the differences, which is
    exactly the difference of the two mean absolute errors the promotion rule
    is written in; Wilcoxon's signed-rank test is the robust alternative for
    heavy-tailed errors.

    Examples
    --------
    >>> ref = [1.0, 2.0, 1.5, 2.5, 1.0, 2.0, 3.0, 1.0]
    >>> cand = [0.5, 1.0, 1.0, 1.5, 0.5, 1.5, 2.0, 0.5]
    >>> r = paired_errors(ref, cand, "greater")
    >>> r.method, r.effect, r.p_value < 0.001
    ('t', 0.6875, True)
    >>> paired_errors(ref, ref).p_value
    1.0
    >>> paired_errors(ref, cand, "greater", method="wilcoxon").p_value < 0.01
    True
    """
    if len(reference_errors) != len(candidate_errors):
        raise ValueError("paired errors must have the same length")
    n = len(reference_errors)
    diffs = [abs(r) - abs(c) for r, c in zip(reference_errors, candidate_errors, strict=True)]
    mean_ref = sum(abs(r) for r in reference_errors) / n if n else 0.0
    mean_cand = sum(abs(c) for c in candidate_errors) / n if n else 0.0
    effect = mean_ref - mean_cand
    counts = {"n": float(n), "reference_mae": mean_ref, "candidate_mae": mean_cand}
    if n < 2 or all(d == 0 for d in diffs):
        return PairedResult(method, alternative, n, effect, 1.0, 0.0, counts)
    if method == "wilcoxon":
        res = sps.wilcoxon(diffs, alternative=alternative, zero_method="wilcox")
    elif all(d == diffs[0] for d in diffs):
        # No spread (a constant offset): the t statistic is infinite and the sign of the difference decides.
        p = _degenerate(diffs[0], alternative)
        return PairedResult(method, alternative, n, effect, p, math.copysign(math.inf, diffs[0]), counts)
    else:
        res = sps.ttest_1samp(diffs, 0.0, alternative=alternative)
    statistic, p = float(res.statistic), float(res.pvalue)
    return PairedResult(method, alternative, n, effect, _clip(p), statistic, counts)


def _degenerate(diff: float, alternative: str) -> float:
    if alternative == "greater":
        return 0.0 if diff > 0 else 1.0
    if alternative == "less":
        return 0.0 if diff < 0 else 1.0
    return 0.0 if diff != 0 else 1.0


def _clip(p: float) -> float:
    return 1.0 if not math.isfinite(p) else min(1.0, max(0.0, float(p)))

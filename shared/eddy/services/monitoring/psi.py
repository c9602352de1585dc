"""Population stability index over fixed bins, counted a batch at a time with numpy.

PSI = sum over bins of (a - e) * ln(a / e), with e the expected share of a bin
(from the reference profile) and a the actual share in the window. Shares are
floored at ``EPSILON`` so an empty bin gives a large but finite value. The
usual reading: below 0.1 stable, 0.1 to 0.2 moderate shift, above 0.2 a shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from eddy.ml.models import class_key

EPSILON = 1e-4


def psi(expected: Sequence[float], actual_counts: Sequence[int]) -> float:
    """PSI of observed counts against expected shares (both per bin, same order).

    >>> round(psi([0.5, 0.5], [50, 50]), 6)
    0.0
    >>> round(psi([0.5, 0.5], [90, 10]), 3)
    0.879
    """
    total = sum(actual_counts)
    if total == 0:
        return 0.0
    value = 0.0
    for e, n in zip(expected, actual_counts, strict=True):
        e, a = max(e, EPSILON), max(n / total, EPSILON)
        value += (a - e) * math.log(a / e)
    return value


class Binning:
    """Where values fall: numeric bins between cut points, or categories plus "other", plus a null bin.

    Built from one feature of a reference profile record (``schemas/profile.avsc``):
    the expected share of each bin is taken from it, nulls included.
    """

    def __init__(self, expected: list[float], edges: np.ndarray | None, categories: dict[str, int] | None) -> None:
        self.expected = expected
        self.edges = edges
        self.categories = categories  # category -> bin index

    @classmethod
    def from_profile(cls, stats: dict[str, Any]) -> Binning | None:
        """The binning of one feature's reference statistics; None when the reference saw no values."""
        total = stats["count"] + stats["nulls"]
        if total == 0 or stats["count"] == 0:
            return None
        present = stats["count"] / total
        if stats["type"] in ("double", "long"):
            shares = [f * present for f in stats["bin_fractions"]] or [present]
            return cls([*shares, stats["nulls"] / total], np.asarray(stats["bin_edges"], dtype=float), None)
        names = sorted(stats["categories"])
        shares = [stats["categories"][c] / total for c in names] + [stats["other"] / total]
        return cls([*shares, stats["nulls"] / total], None, {c: i for i, c in enumerate(names)})

    @classmethod
    def from_sample(cls, values: Sequence[float], bins: int = 10) -> Binning:
        """Decile bins of a numeric reference sample (the score distribution has no profile)."""
        sample = np.asarray(values, dtype=float)
        edges = np.unique(np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, sample, side="left"), minlength=len(edges) + 1)
        return cls([*(counts / len(sample)).tolist(), 0.0], edges, None)

    @property
    def size(self) -> int:
        return len(self.expected)

    def counts(self, values: Sequence[Any]) -> np.ndarray:
        """How many of ``values`` fall in each bin (None is null; so are NaN and non-numbers on a numeric bin)."""
        out = np.zeros(self.size, dtype=np.int64)
        null = self.size - 1
        if self.edges is not None:
            numbers = np.array(
                [v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in values]
            )
            finite = numbers[np.isfinite(numbers)]
            out[:null] += np.bincount(np.searchsorted(self.edges, finite, side="left"), minlength=null)[:null]
            out[null] += len(numbers) - len(finite)
            return out
        assert self.categories is not None
        other = null - 1
        for value in values:
            if value is None:
                out[null] += 1
            else:
                out[self.categories.get(class_key(value), other)] += 1
        return out

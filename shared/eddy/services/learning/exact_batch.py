"""Learning a batch of joined examples at once, leaving exactly the model river's ``learn_one`` would, in order.

For the commonest pipeline, ``StandardScaler | LogisticRegression`` (or ``LinearRegression``) with plain SGD,
the batch's examples go through eddy's native kernel (:class:`eddy.ml.linear_kernel.LinearKernel`, river's
arithmetic to the bit) in one call; everything else, and any example the kernel cannot take as it is (a missing,
non-float or non-finite feature, features in another order, a label of another type), is learned by river one
by one, at its place in the sequence. The learner's label order is the order examples are learned in, whichever
path each takes, so the model is the one plain river builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from eddy.ml.linear_kernel import LEARN, LinearKernel
from eddy.ml.models import is_anomaly_detector

Example = tuple[Any, Any]  # (features, label)


class ExactBatch:
    """Learns sequences of examples into ``estimator``, as river would one at a time.

    Examples
    --------
    >>> from river import linear_model, preprocessing
    >>> model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    >>> reference = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    >>> examples = [({"a": 1.0, "b": 2.0}, True), ({"a": 3, "b": 0.5}, False), ({"a": 0.5, "b": 1.0}, False)]
    >>> for x, y in examples:
    ...     reference.learn_one(x, y)
    >>> batch = ExactBatch(model, ("a", "b"), "binary")
    >>> batch.learn(examples)  # the int feature of the second is river's to learn, the others the kernel's
    [None, None, None]
    >>> model["LogisticRegression"].weights == reference["LogisticRegression"].weights
    True
    """

    def __init__(self, estimator: Any, features: Sequence[str], task: str) -> None:
        self.estimator = estimator
        self.features = tuple(features)
        self.kernel = LinearKernel.of(estimator, self.features) if task in ("binary", "regression") else None
        # The kernel reads a binary label as 0/1 and a regression target as a double: only those types go to it.
        self.label_type: type = bool if task == "binary" else float
        self.native_count = 0  # examples learned by the kernel, for tests and benchmarks
        # As eddy.ml.models.learn, decided once: an anomaly detector learns the features only (it is unsupervised).
        self.unsupervised = is_anomaly_detector(estimator)

    def learn(self, examples: Sequence[Example]) -> list[Exception | None]:
        """Learn ``examples`` in order; per example, None once learned, or the exception that kept it unlearned."""
        errors: list[Exception | None] = [None] * len(examples)
        if self.kernel is None:
            self._one_by_one(examples, 0, len(examples), errors)
            return errors
        eligible, X = self._matrix(examples)
        start = 0
        while start < len(examples):
            end = start + 1
            while end < len(examples) and eligible[end] == eligible[start]:
                end += 1
            if not eligible[start] or not self._native(examples, X, start, end):
                self._one_by_one(examples, start, end, errors)
            start = end
        return errors

    def _matrix(self, examples: Sequence[Example]) -> tuple[list[bool], np.ndarray]:
        """Which examples the kernel takes as they are, and their features as rows (zeros for the others)."""
        features, label_type, d = self.features, self.label_type, len(self.features)
        blank = [0.0] * d
        # The common case first: every example has the features in order, all floats, and a label of the type.
        rows = [list(x.values()) if type(x) is dict and tuple(x) == features else blank for x, _ in examples]
        labels_ok = [type(y) is label_type for _, y in examples]
        if all(labels_ok) and blank not in rows and {type(v) for row in rows for v in row} == {float}:
            eligible = [True] * len(rows)
        else:
            eligible = [
                ok and row is not blank and all(type(v) is float for v in row)
                for row, ok in zip(rows, labels_ok, strict=True)
            ]
            rows = [row if ok else blank for row, ok in zip(rows, eligible, strict=True)]
        X = np.array(rows, dtype=np.float64).reshape(len(rows), d)
        # An infinite or NaN feature could take river's Python arithmetic and C's apart (min/max of a NaN differ).
        finite: list[bool] = np.asarray(np.isfinite(X).all(axis=1)).tolist()
        return [ok and fin for ok, fin in zip(eligible, finite, strict=True)], X

    def _native(self, examples: Sequence[Example], X: np.ndarray, start: int, end: int) -> bool:
        """Learn ``examples[start:end]`` through the kernel; False (and nothing learned) if it refused them."""
        assert self.kernel is not None
        n = end - start
        y = np.fromiter((float(examples[k][1]) for k in range(start, end)), np.float64, n)
        try:
            self.kernel.run(np.full(n, LEARN, dtype=np.uint8), np.arange(n, dtype=np.int64), X[start:end], y)
        except ValueError:
            return False  # the kernel checks its buffers before it changes anything: river learns them instead
        self.native_count += n
        return True

    def _one_by_one(self, examples: Sequence[Example], start: int, end: int, errors: list[Exception | None]) -> None:
        learn_one, unsupervised = self.estimator.learn_one, self.unsupervised
        for k in range(start, end):
            x, y = examples[k]
            try:
                if unsupervised:
                    learn_one(x)
                else:
                    learn_one(x, y)
            except Exception as exc:
                errors[k] = exc

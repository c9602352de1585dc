"""A native path for the commonest online model, StandardScaler | LogisticRegression (or LinearRegression).

river predicts and learns one example at a time in Python, about 50,000 a second
for this pipeline. :class:`LinearKernel` runs the same arithmetic in C
(``shared/eddy/native/_linear_native.c``) over a whole sequence of predict and learn steps,
then writes the state back into the river objects, so the estimator afterwards
is river's own and pickles, predicts and learns as before. It applies only to
the exact configuration it reproduces (plain SGD with constant learning rates,
no L1, zero initial weights, a scaler without a window); anything else, a
build without a C compiler, or ``EDDY_NATIVE=off``, takes river's own path.

>>> from river import linear_model, preprocessing
>>> model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> reference = preprocessing.StandardScaler() | linear_model.LogisticRegression()
>>> reference.learn_one({"a": 1.0, "b": 2.0}, True); reference.learn_one({"a": 2.0, "b": 0.5}, False)
>>> kernel = LinearKernel.of(model, ("a", "b"))  # None without the extension
>>> if kernel is not None:
...     X = np.array([[1.0, 2.0], [2.0, 0.5], [0.0, 1.0]])
...     out = kernel.run(np.array([1, 1, 0], dtype=np.uint8), np.array([0, 1, 2]), X, np.array([1.0, 0.0, 0.0]))
...     assert abs(out[2] - reference.predict_proba_one({"a": 0.0, "b": 1.0})[True]) < 1e-12
...     assert model["LogisticRegression"].weights == reference["LogisticRegression"].weights
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from river import compose, linear_model, optim, preprocessing

from eddy.native import load

if TYPE_CHECKING:
    # mypy checks the call in run() against the extension's stub (_linear_native.pyi) ...
    from eddy.native import _linear_native as native
else:
    # ... while at run time it is None (river's own path) without a C compiler at install time, or with EDDY_NATIVE=off.
    native = load("_linear_native")

LOSS_LOG, LOSS_SQUARED = 0, 1
PREDICT, LEARN = 0, 1


class LinearKernel:
    """Runs predict/learn sequences of one eligible pipeline natively (see :meth:`of`)."""

    def __init__(self, estimator: compose.Pipeline, features: Sequence[str], loss: int) -> None:
        self.estimator = estimator
        self.features = tuple(features)
        self.loss = loss
        scaler, model = estimator.steps.values()
        self.scaler: preprocessing.StandardScaler = scaler
        self.model: linear_model.base.GLM = model

    @classmethod
    def of(cls, estimator: Any, features: Sequence[str]) -> LinearKernel | None:
        """The kernel for ``estimator``, or None when it is not exactly the configuration reproduced."""
        if native is None or not isinstance(estimator, compose.Pipeline) or len(estimator.steps) != 2:
            return None
        scaler, model = estimator.steps.values()
        if type(scaler) is not preprocessing.StandardScaler or not scaler.with_std or scaler.window_size is not None:
            return None
        if type(model) is linear_model.LogisticRegression:
            if type(model.loss) is not optim.losses.Log or (model.loss.weight_pos, model.loss.weight_neg) != (1, 1):
                return None
            loss = LOSS_LOG
        elif type(model) is linear_model.LinearRegression:
            if type(model.loss) is not optim.losses.Squared:
                return None
            loss = LOSS_SQUARED
        else:
            return None
        plain = (
            type(model.optimizer) is optim.SGD
            and type(model.optimizer.lr) is optim.schedulers.Constant
            and type(model.intercept_lr) is optim.schedulers.Constant
            and type(model.initializer) is optim.initializers.Zeros
            and model.l1 == 0
        )
        return cls(estimator, features, loss) if plain else None

    def run(self, kinds: np.ndarray, index: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Apply ``kinds[k]`` (PREDICT or LEARN) to row ``index[k]`` of ``X`` in order; predictions per row.

        ``X`` holds the features in :attr:`features` order; ``y`` the targets (0/1 for a classifier).
        Rows never predicted are NaN in the result.
        """
        d = len(self.features)
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = np.ascontiguousarray(y, dtype=np.float64)
        out = np.full(len(X), np.nan)
        state = self._state()
        model = self.model
        assert native is not None
        native.run(
            np.ascontiguousarray(kinds, dtype=np.uint8).tobytes(),
            np.ascontiguousarray(index, dtype=np.int64).tobytes(),
            X.tobytes(),
            y.tobytes(),
            state,
            out,
            d,
            self.loss,
            float(model.optimizer.lr.learning_rate),
            float(model.intercept_lr.learning_rate),
            float(model.l2),
            float(model.clip_gradient),
        )
        if (np.asarray(kinds) == LEARN).any():
            self._write_back(state)
        return out

    def _state(self) -> np.ndarray:
        s, w = self.scaler, self.model._weights
        columns = [
            [float(s.counts.get(f, 0)) for f in self.features],
            [float(s.means.get(f, 0.0)) for f in self.features],
            [float(s.vars.get(f, 0.0)) for f in self.features],
            [float(w[f]) if f in w else 0.0 for f in self.features],
            [float(self.model.intercept), float(self.model.optimizer.n_iterations)],
        ]
        return np.array([v for column in columns for v in column], dtype=np.float64)

    def _write_back(self, state: np.ndarray) -> None:
        d = len(self.features)
        values = state.tolist()
        s, weights = self.scaler, self.model._weights
        for j, f in enumerate(self.features):
            if values[j]:
                s.counts[f] = int(values[j])
                s.means[f] = values[d + j]
                s.vars[f] = values[2 * d + j]
                weights[f] = values[3 * d + j]
        self.model.intercept = values[4 * d]
        self.model.optimizer.n_iterations = int(values[4 * d + 1])

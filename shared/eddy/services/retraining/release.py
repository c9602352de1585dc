"""Release checks: can this estimator be served at all, whatever its accuracy?

A challenger is predicted on a probe set (held-out features) the way
inference would, one event at a time, and must:

- answer every event with a valid output: a class for a classifier, a finite
  number for a regressor (never None);
- give no NaN or infinite probability;
- answer within the latency budget (p99 of a single prediction);
- pickle into a signed artifact within the size budget, and load back from it once its signature verifies.

Examples
--------
>>> from river import linear_model
>>> model = linear_model.LogisticRegression()
>>> model.learn_one({"x": 1.0}, True)
>>> from eddy.core.signing import Keyring
>>> keys = Keyring({"k1": b"0" * 32}, "k1")
>>> report = check_release(model, "binary", [{"x": 0.5}] * 20, ReleaseBudget(probe=10), keys)
>>> report.passed, report.checks["valid_outputs"]["probed"], report.signature[:6]
(True, 10, 'v1:k1:')
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eddy.contracts.retraining import ReleaseBudget
from eddy.ml.artifacts import Signer, signed_pickle, verified_unpickle
from eddy.ml.models import Features, is_anomaly_detector, predict_batch


@dataclass
class ReleaseReport:
    """Every check's verdict and numbers; ``failed`` names the checks that did not pass."""

    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifact: bytes = b""
    signature: str = ""

    @property
    def failed(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check["passed"]]

    @property
    def passed(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "checks": self.checks}


def check_release(
    estimator: Any,
    task: str,
    probe: Sequence[Features],
    budget: ReleaseBudget,
    signer: Signer,
    timer: Callable[[], float] = time.perf_counter,
) -> ReleaseReport:
    """Run the release checks of ``estimator`` on up to ``budget.probe`` events of ``probe``.

    Never raises: an estimator that raises while predicting or pickling fails that check.
    """
    rows = list(probe[: budget.probe])
    report = ReleaseReport()
    latencies: list[float] = []
    invalid = nan = errors = 0
    first_problem = ""
    for x in rows:
        started = timer()
        try:
            # The path inference serves a single event through.
            ((prediction, probabilities),) = predict_batch(estimator, task, [x])
            raw_ok = _raw_output_finite(estimator, task, x)
        except Exception as exc:
            errors += 1
            first_problem = first_problem or f"{type(exc).__name__}: {exc}"
            continue
        latencies.append((timer() - started) * 1000)
        if not _valid(prediction, task):
            invalid += 1
            first_problem = first_problem or f"prediction {prediction!r} for {x}"
        if not raw_ok or (probabilities is not None and not all(math.isfinite(p) for p in probabilities.values())):
            nan += 1
            first_problem = first_problem or f"non-finite output for {x}"
    report.checks["valid_outputs"] = {
        "passed": bool(rows) and invalid == 0 and errors == 0,
        "probed": len(rows),
        "invalid": invalid,
        "errors": errors,
        "example": first_problem[:200],
    }
    report.checks["finite"] = {"passed": nan == 0, "non_finite": nan}
    p99 = _p99(latencies)
    report.checks["latency"] = {
        "passed": bool(latencies) and p99 <= budget.max_latency_ms,
        "p99_ms": round(p99, 4),
        "max_latency_ms": budget.max_latency_ms,
    }
    report.checks["artifact"] = _artifact_check(estimator, budget.max_artifact_bytes, signer, report)
    return report


def _valid(prediction: Any, task: str) -> bool:
    if task == "regression":
        return isinstance(prediction, int | float) and not isinstance(prediction, bool) and math.isfinite(prediction)
    return prediction is not None


def _raw_output_finite(estimator: Any, task: str, x: Features) -> bool:
    """Whether the estimator's own output is finite: ``predict_batch`` quietly drops NaNs, hiding a broken model."""
    if is_anomaly_detector(estimator):
        return math.isfinite(float(estimator.score_one(x)))
    if task == "regression":
        y = estimator.predict_one(x)
        return y is not None and math.isfinite(float(y))
    proba = estimator.predict_proba_one(x)
    return all(math.isfinite(float(p)) for p in proba.values())


def _p99(latencies: Sequence[float]) -> float:
    if not latencies:
        return math.inf
    ordered = sorted(latencies)
    # Nearest rank: with fewer than 100 probes the p99 is the slowest one.
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def _artifact_check(estimator: Any, limit: int, signer: Signer, report: ReleaseReport) -> dict[str, Any]:
    try:
        artifact, signature = signed_pickle(estimator, signer)
        verified_unpickle(artifact, signature, signer, "candidate")  # the round trip the registry will make
    except Exception as exc:
        return {"passed": False, "bytes": None, "max_artifact_bytes": limit, "error": f"{type(exc).__name__}: {exc}"}
    report.artifact, report.signature = artifact, signature
    return {"passed": len(artifact) <= limit, "bytes": len(artifact), "max_artifact_bytes": limit}

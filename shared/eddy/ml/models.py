"""River models: built from a contract's declarative spec, served, learned, snapshotted.

A spec names river estimators by ``module.Class`` with keyword parameters::

    pipeline:
      - preprocessing.StandardScaler: {}
      - linear_model.LogisticRegression: {optimizer: {optim.SGD: {lr: 0.05}}}

Snapshots are pickles signed with the keyring's HMAC (``eddy.ml.artifacts``): a snapshot is unpickled only
after its signature verifies, and its SHA-256 is checked too (it names the registry's artifact file).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import pickle
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from river import compose
from river.base import AnomalyDetector

from eddy.contracts.stream import ModelSpec
from eddy.ml.artifacts import ArtifactRefused, Signer, signed_pickle, verify

# Only river's own modules can be named in a spec: a contract must not be able to import arbitrary code.
ALLOWED_MODULES = {
    "anomaly",
    "compose",
    "dummy",
    "drift",
    "ensemble",
    "feature_extraction",
    "forest",
    "linear_model",
    "multiclass",
    "naive_bayes",
    "neighbors",
    "optim",
    "preprocessing",
    "stats",
    "tree",
    "imblearn",
    "rules",
}

Scalar = bool | int | float | str | None
Features = dict[str, Scalar]


class ModelSpecError(ValueError):
    """A spec naming an unknown estimator or giving it bad parameters."""


class SnapshotError(ValueError):
    """A snapshot refused: unsigned or badly signed, a checksum that does not match, or bytes that do not unpickle.

    ``reason`` is one word for metrics and dead-letter headers (``unsigned``, ``bad_signature``,
    ``unknown_key``, ``malformed``, ``checksum_mismatch``, ``unpicklable``).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def build_estimator(spec: ModelSpec) -> Any:
    """A fresh river estimator (a Pipeline when the spec has several steps).

    Examples
    --------
    >>> from eddy.contracts.stream import ModelSpec
    >>> spec = ModelSpec("m", (("preprocessing.StandardScaler", {}), ("linear_model.LogisticRegression", {})), ("x",))
    >>> model = build_estimator(spec)
    >>> [type(step).__name__ for step in model.steps.values()]
    ['StandardScaler', 'LogisticRegression']
    """
    steps = [_instantiate(name, params, spec.name) for name, params in spec.pipeline]
    return steps[0] if len(steps) == 1 else compose.Pipeline(*steps)


def _instantiate(name: str, params: dict[str, Any] | list[Any], model: str) -> Any:
    module_name, _, class_name = name.rpartition(".")
    if module_name.split(".")[0] not in ALLOWED_MODULES or not class_name:
        modules = ", ".join(sorted(ALLOWED_MODULES))
        raise ModelSpecError(f"model {model!r}: {name!r} is not a river estimator (use module.Class from: {modules})")
    try:
        module = importlib.import_module(f"river.{module_name}")
    except ImportError as exc:
        raise ModelSpecError(f"model {model!r}: river has no module {module_name!r}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ModelSpecError(f"model {model!r}: river.{module_name} has no class {class_name!r}")
    args = [_param(v, model) for v in params] if isinstance(params, list) else []
    kwargs = {k: _param(v, model) for k, v in params.items()} if isinstance(params, dict) else {}
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelSpecError(f"model {model!r}: bad parameters for {name}: {exc}") from exc


def _param(value: Any, model: str) -> Any:
    # A one-key mapping whose key names a river class is a nested estimator (an optimizer, a base model, ...).
    if isinstance(value, dict) and len(value) == 1:
        ((key, params),) = value.items()
        if isinstance(key, str) and key.split(".")[0] in ALLOWED_MODULES and "." in key:
            return _instantiate(key, params if isinstance(params, list) else dict(params or {}), model)
    return value


def class_key(label: Scalar) -> str:
    """How a class is written as a map key in Avro (maps have string keys).

    >>> class_key(True), class_key("cat"), class_key(3)
    ('true', 'cat', '3')
    """
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def predict_batch(estimator: Any, task: str, rows: list[Features]) -> list[tuple[Scalar, dict[str, float] | None]]:
    """Predict every row, in one vectorised call where the estimator supports it.

    Returns ``(prediction, probabilities)`` per row; probabilities are None for
    regression. A classifier that has seen no class yet predicts None.
    """
    if is_anomaly_detector(estimator):
        return [_anomaly(estimator.score_one(x)) for x in rows]
    if task == "regression":
        return [(_finite(y), None) for y in _regress(estimator, rows)]
    frame = _probability_frame(estimator, rows)
    if frame is None:
        return [_decide(dict(estimator.predict_proba_one(x))) for x in rows]
    values = frame.to_numpy(dtype=float)
    if values.shape[1] == 0:
        return [(None, None)] * len(rows)
    if np.isnan(values).any():
        return [_decide(dict(zip(frame.columns, row, strict=True))) for row in values.tolist()]
    # The common case, a whole batch at once: the first most probable class wins, as in _decide.
    classes = [_scalar(c) for c in frame.columns]
    keys = [class_key(c) for c in classes]
    best = values.argmax(axis=1).tolist()
    return [(classes[b], dict(zip(keys, row, strict=True))) for b, row in zip(best, values.tolist(), strict=True)]


def _probability_frame(estimator: Any, rows: list[Features]) -> pd.DataFrame | None:
    if len(rows) > 1 and hasattr(estimator, "predict_proba_many"):
        try:
            frame: pd.DataFrame = estimator.predict_proba_many(pd.DataFrame(rows))
            return frame
        except (NotImplementedError, AttributeError):
            pass  # some pipeline step (feature_extraction.Agg, say) has no batch path: one by one
    return None


def _regress(estimator: Any, rows: list[Features]) -> list[Any]:
    if len(rows) > 1 and hasattr(estimator, "predict_many"):
        try:
            return list(estimator.predict_many(pd.DataFrame(rows)))
        except (NotImplementedError, AttributeError):
            pass
    return [estimator.predict_one(x) for x in rows]


def is_anomaly_detector(estimator: Any) -> bool:
    """Whether ``estimator`` (or its pipeline's last step) is an unsupervised anomaly detector."""
    final = list(estimator.steps.values())[-1] if isinstance(estimator, compose.Pipeline) else estimator
    return isinstance(final, AnomalyDetector)


def learn(estimator: Any, x: Features, y: Any) -> None:
    """Learn one labeled example; an anomaly detector learns the features only (it is unsupervised)."""
    if is_anomaly_detector(estimator):
        estimator.learn_one(x)
    else:
        estimator.learn_one(x, y)


def _anomaly(score: float) -> tuple[Scalar, dict[str, float] | None]:
    # An anomaly detector answers a binary task: its score, clipped to [0, 1], is the probability of "true".
    p = min(1.0, max(0.0, float(score))) if math.isfinite(score) else 1.0
    return p >= 0.5, {"false": 1.0 - p, "true": p}


def _decide(proba: dict[Any, float]) -> tuple[Scalar, dict[str, float] | None]:
    clean = {c: p for c, p in proba.items() if p == p}
    if not clean:
        return None, None
    best = max(clean, key=lambda c: clean[c])
    return _scalar(best), {class_key(c): float(p) for c, p in clean.items()}


def _scalar(value: Any) -> Scalar:
    if hasattr(value, "item"):  # numpy scalars from pandas
        value = value.item()
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass
class ModelState:
    """An online model and where it is in its lineage."""

    stream: str
    spec: ModelSpec
    estimator: Any
    version: int = 1
    learned_count: int = 0
    source_offsets: dict[str, int] = field(default_factory=dict)
    # Where this version's online learning began ("topic:partition" -> offset); empty: from the beginning.
    learned_from: dict[str, int] = field(default_factory=dict)
    # The label time of the newest label learned (ms; 0: none): how fresh the model is. A class-level default,
    # so a checkpoint pickled before the field existed restores with 0.
    newest_label_ms: int = 0

    @classmethod
    def fresh(cls, stream: str, spec: ModelSpec, version: int = 1) -> ModelState:
        return cls(stream, spec, build_estimator(spec), version)

    def features_of(self, record: dict[str, Any]) -> Features:
        return {name: record.get(name) for name in self.spec.features}

    def to_snapshot_record(self, signer: Signer, code_version: str = "unknown") -> dict[str, Any]:
        """The Avro ``ModelSnapshot`` record for this state, its artifact signed by ``signer``."""
        artifact, signature = signed_pickle(self.estimator, signer)
        return {
            "stream": self.stream,
            "model_name": self.spec.name,
            "model_version": self.version,
            "learned_count": self.learned_count,
            "created_at_ms": int(time.time() * 1000),
            "spec": self.spec.to_json(),
            "artifact": artifact,
            "sha256": hashlib.sha256(artifact).hexdigest(),
            "signature": signature,
            "source_offsets": dict(self.source_offsets),
            "learned_from_offsets": dict(getattr(self, "learned_from", {})),
            "newest_label_ms": self.newest_label_ms,
            "code_version": code_version,
        }


def check_snapshot(record: dict[str, Any], signer: Signer) -> None:
    """Check a snapshot's signature, then its checksum, without unpickling it.

    Raises
    ------
    SnapshotError
        If the signature is missing or wrong, or the checksum does not match.
    """
    artifact = record["artifact"]
    what = f"snapshot {record['stream']}/{record['model_name']} v{record['model_version']}"
    try:
        verify(artifact, record.get("signature") or "", signer, "snapshot")
    except ArtifactRefused as exc:
        raise SnapshotError(exc.reason, f"{what}: {exc}") from exc
    if hashlib.sha256(artifact).hexdigest() != record["sha256"]:
        raise SnapshotError("checksum_mismatch", f"{what}: checksum mismatch")


def load_snapshot_estimator(record: dict[str, Any], signer: Signer) -> Any:
    """Unpickle a snapshot's estimator once its signature verifies and its checksum matches.

    Raises
    ------
    SnapshotError
        If the signature is missing or wrong (the bytes are never unpickled), the checksum does not match or
        the bytes do not unpickle.
    """
    check_snapshot(record, signer)
    try:
        return pickle.loads(record["artifact"])  # its signature verified above
    except Exception as exc:
        what = f"snapshot {record['stream']}/{record['model_name']} v{record['model_version']}"
        raise SnapshotError("unpicklable", f"{what}: cannot unpickle: {exc}") from exc


def spec_from_json(text: str) -> ModelSpec:
    doc = json.loads(text)
    steps = tuple((name, params) for step in doc["pipeline"] for name, params in step.items())
    return ModelSpec(doc["name"], steps, tuple(doc["features"]))

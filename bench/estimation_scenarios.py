"""Seeded binary streams whose labels arrive late, run through the monitoring handler with estimation on.

The model is river's ``StandardScaler | LogisticRegression``, trained on the first
:data:`TRAINING` events of the stream and then fixed, as a batch-trained model is
deployed. The events' two features are drawn from N(0, 2²) each, and a label is
``true`` with probability ``sigmoid(2 (x0 + x1))``: the model is right about 90% of the
time. Every event is predicted when it arrives; its label arrives ``delay`` events
later. Predictions and labeled examples go to :class:`Monitor` in batches, as the
service reads them from S.predictions and S.labeled.

Scenarios (the change at ``change_at``):

- ``stationary``: nothing changes.
- ``covariate``: the features are drawn from N(0, 0.7²) instead: more events near the model's
  boundary, so accuracy falls from about 0.90 to 0.77, while the labelling rule stays the same.
- ``concept``: the labelling rule turns to ``sigmoid(2 x0)``; the features do not change (accuracy
  falls to about 0.72).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from eddy.contracts.monitoring import EstimationSpec
from eddy.contracts.stream import StreamContract, load_contract
from eddy.core.settings import REPO_ROOT
from eddy.runtime.loop import InRecord
from eddy.services.monitoring.estimated_quality import EstimatedWindow
from eddy.services.monitoring.handlers import Monitor, MonitorConfig
from river import compose, linear_model, preprocessing

SCENARIOS = ("stationary", "covariate", "concept")
TRAINING = 5_000
SPREAD, SHIFTED_SPREAD, STEEPNESS = 2.0, 0.7, 2.0
ESTIMATED, LABEL_BASED = "estimated_quality", "concept_drift"


@dataclass(frozen=True)
class Fired:
    index: int  # events predicted when the alert fired
    kind: str
    status: str


@dataclass(frozen=True)
class Run:
    kind: str
    seed: int
    change_at: int
    fired: list[Fired]
    windows: list[EstimatedWindow]  # every window of the champion, oldest first, labels all in
    alerts: list[dict[str, Any]]  # the alert records, as they would go to S.alerts

    def first(self, kind: str, after: int = 0) -> int | None:
        """Events from ``after`` to the first firing alert of ``kind`` at or after it."""
        return next((f.index - after for f in self.fired if f.kind == kind and f.status == "firing"
                     and f.index >= after), None)  # fmt: skip

    def errors(self, before: int | None = None, after: int | None = None) -> list[float]:
        """Estimated minus realized accuracy of each window wholly before event ``before`` or from ``after`` on."""
        return [
            w.estimated["accuracy"].value - w.realized["accuracy"]
            for w in self.windows
            if "accuracy" in w.realized
            and (before is None or max(events(w)) < before)
            and (after is None or min(events(w)) >= after)
        ]


def events(window: EstimatedWindow) -> list[int]:
    """The indexes of the events a window holds (event ids here are ``e<index>``)."""
    return [int(event_id[1:]) for event_id in window.predictions]


def contract(spec: EstimationSpec | None = None) -> StreamContract:
    """The demo contract, with estimation as ``spec`` says (default: the demo's own)."""
    demo = load_contract(REPO_ROOT / "schemas/streams/demo.yaml")
    monitoring = replace(
        demo.monitoring, estimated_quality=spec or demo.monitoring.estimated_quality or EstimationSpec()
    )
    return replace(demo, monitoring=monitoring)


def draw(kind: str, rng: np.random.Generator, n: int, change_at: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` events of scenario ``kind``: features (n x 2) and labels."""
    index = np.arange(n)
    changed = index >= change_at if kind != "stationary" else np.zeros(n, dtype=bool)
    spread = np.where(changed & (kind == "covariate"), SHIFTED_SPREAD, SPREAD)
    x = rng.normal(0.0, 1.0, (n, 2)) * spread[:, None]
    z = np.where(changed & (kind == "concept"), x[:, 0], x[:, 0] + x[:, 1])
    y = rng.random(n) < 1.0 / (1.0 + np.exp(-STEEPNESS * z))
    return x, y


def run(kind: str, seed: int = 1, n: int = 20_000, change_at: int = 10_000, delay: int = 5_000,
        batch: int = 250, spec: EstimationSpec | None = None) -> Run:  # fmt: skip
    """Train on the first :data:`TRAINING` events, then predict ``n`` more with labels ``delay`` events late."""
    if kind not in SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r}: one of {SCENARIOS}")
    rng = np.random.default_rng(seed)
    x, y = draw(kind, rng, TRAINING + n, TRAINING + change_at)
    model = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    for features, label in zip(x[:TRAINING], y[:TRAINING], strict=True):
        model.learn_one({"x0": features[0], "x1": features[1]}, bool(label))
    monitor = Monitor(contract(spec), MonitorConfig(), clock=lambda: 0.0)
    predictions: list[dict[str, Any]] = []
    fired: list[Fired] = []
    alerts: list[dict[str, Any]] = []
    for start in range(0, n + delay, batch):
        arriving = []
        for i in range(start, min(start + batch, n)):
            features = x[TRAINING + i]
            p = float(model.predict_proba_one({"x0": features[0], "x1": features[1]}).get(True, 0.0))
            predictions.append(prediction(i, p))
            arriving.append(in_record("demo.predictions", i, predictions[-1]))
        labels = [
            in_record("demo.labeled", j, labeled(predictions[j], bool(y[TRAINING + j])))
            for j in range(max(0, start - delay), min(start + batch - delay, n))
        ]
        for records in (arriving, labels):
            for out in monitor(records).outputs:
                fired.append(Fired(min(start + batch, n), out.value["kind"], out.value["status"]))
                alerts.append(out.value)
    monitor.tick(0.0)
    estimates = monitor.watches[("default", 1)].estimates
    assert estimates is not None
    return Run(kind, seed, change_at, fired, list(estimates.windows.values()), alerts)


def prediction(i: int, p: float) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "stream": "demo",
        "model_name": "default",
        "model_version": 1,
        "model_learned": TRAINING,
        "served": True,
        "prediction": p >= 0.5,
        "probabilities": {"true": p, "false": 1.0 - p},
        "features": {},
        "event_time_ms": i,
        "predicted_at_ms": i,
        "latency_ms": 0.0,
        "ingested_at_ms": None,
        "source_partition": 0,
        "source_offset": i,
        "segment": None,
    }


def labeled(predicted: dict[str, Any], label: bool) -> dict[str, Any]:
    return {**predicted, "label": label, "label_time_ms": 0, "joined_at_ms": 0}


def in_record(topic: str, offset: int, value: dict[str, Any]) -> InRecord:
    """``value`` as the handler gets it from partition 0 of ``topic`` at ``offset``."""
    return InRecord(topic, 0, offset, value["event_id"], value, 0, [], b"")


def mean_abs(values: list[float]) -> float:
    return sum(abs(v) for v in values) / len(values) if values else math.nan


__all__ = [
    "ESTIMATED",
    "LABEL_BASED",
    "SCENARIOS",
    "Fired",
    "Run",
    "contract",
    "draw",
    "in_record",
    "labeled",
    "mean_abs",
    "prediction",
    "run",
]

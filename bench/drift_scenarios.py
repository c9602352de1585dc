"""Seeded synthetic streams with a known change point, run through the monitoring handler.

Each scenario draws events from river's SEA generator (three features in
[0, 10], like the demo stream), lets the demo contract's champion pipeline
predict and then learn each one, as inference and learning do, and feeds the
validated events, predictions and labeled examples to :class:`Monitor` in
batches. The reference profile is taken by validation's own
:class:`ProfileTracker` from the first events. What comes out is every alert
with the event index at which it fired.

Scenarios:

- ``abrupt``: the concept changes at once (SEA threshold 8 → 9.5: 13% of the space flips its label).
- ``gradual``: the same change blended in over 1,000 events (river's ConceptDriftStream, sigmoid).
- ``covariate``: feature x0 moves from U(0, 10) to U(0, 4); the labelling rule stays the same.
- ``stationary``: no change at all.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eddy.contracts.stream import StreamContract, load_contract
from eddy.core.settings import REPO_ROOT
from eddy.ml.models import build_estimator, learn, predict_batch
from eddy.runtime.loop import InRecord
from eddy.services.monitoring.handlers import Monitor, MonitorConfig
from eddy.services.validation.profile import ProfileTracker
from river.datasets import synth

REGIONS = ("north", "south", "east", "west")
EXPECTED_KIND = {"abrupt": "concept_drift", "gradual": "concept_drift", "covariate": "data_drift"}
GRADUAL_WIDTH = 1000


@dataclass(frozen=True)
class Fired:
    index: int  # events drawn when the alert fired
    kind: str
    subject: str
    status: str


def demo_contract() -> StreamContract:
    return load_contract(REPO_ROOT / "schemas/streams/demo.yaml")


def draws(kind: str, seed: int, change_at: int) -> Iterator[tuple[dict[str, float], bool]]:
    """(features, label) pairs of scenario ``kind``; the change, if any, at event ``change_at``."""
    before = synth.SEA(variant=0, seed=seed)
    after = synth.SEA(variant=3, seed=seed + 1)
    if kind == "abrupt":
        # river's ConceptDriftStream overflows for a width of 1, so the switch is made here.
        for i, (x, y) in enumerate(before):
            if i >= change_at:
                break
            yield _features(x), y
        yield from ((_features(x), y) for x, y in after)
    elif kind == "gradual":
        stream = synth.ConceptDriftStream(before, after, position=change_at, width=GRADUAL_WIDTH, seed=seed)
        yield from ((_features(x), y) for x, y in stream)
    elif kind == "covariate":
        rng = random.Random(seed)
        for i, (x, _) in enumerate(before):
            features = _features(x)
            if i >= change_at:
                features["x0"] = rng.uniform(0, 4)
            yield features, features["x0"] + features["x1"] <= 8  # SEA variant 0's rule, on the shifted x0
    elif kind == "stationary":
        yield from ((_features(x), y) for x, y in before)
    else:
        raise ValueError(f"unknown scenario {kind!r}")


def _features(x: dict[Any, float]) -> dict[str, float]:
    return {"x0": x[0], "x1": x[1], "x2": x[2]}


def run(kind: str, n: int = 20_000, change_at: int = 10_000, seed: int = 1, batch: int = 100) -> list[Fired]:
    """Every alert record the monitor raised over ``n`` events of scenario ``kind``."""
    contract = demo_contract()
    topics = {t: f"demo.{t}" for t in ("validated", "predictions", "labeled")}
    estimator = build_estimator(contract.champion)
    monitor = Monitor(contract, MonitorConfig(), clock=lambda: 0.0)
    profiles = ProfileTracker(contract, reference_size=1000)
    rng = random.Random(seed)
    fired: list[Fired] = []
    reference_sent = False
    source = draws(kind, seed, change_at)
    for start in range(0, n, batch):
        chunk = list(itertools.islice(source, batch))
        events = [
            {"event_id": f"e{start + i}", "event_time_ms": start + i, **x, "region": rng.choice(REGIONS)}
            for i, (x, _) in enumerate(chunk)
        ]
        profiles.observe_values(events)
        if not reference_sent and profiles.reference_complete:
            ((_, reference),) = [m for m in profiles.due(0.0) if m.key.endswith(":reference")]
            monitor.on_profile(reference)
            reference_sent = True
        predictions, labeled = [], []
        for event, (_, y) in zip(events, chunk, strict=True):
            row: dict[str, Any] = {f: event[f] for f in contract.champion.features}
            prediction, probabilities = predict_batch(estimator, contract.task, [row])[0]
            value = _prediction(event, row, prediction, probabilities)
            predictions.append(value)
            labeled.append({**value, "label": y, "label_time_ms": event["event_time_ms"], "joined_at_ms": 0})
            learn(estimator, row, y)
        for topic, values in (("validated", events), ("predictions", predictions), ("labeled", labeled)):
            records = [_record(topics[topic], start + i, v) for i, v in enumerate(values)]
            for out in monitor(records).outputs:
                a = out.value
                fired.append(Fired(start + len(chunk), a["kind"], a["subject"], a["status"]))
    return fired


def _prediction(event: dict[str, Any], row: dict[str, Any], prediction: Any, probabilities: Any) -> dict[str, Any]:
    return {
        "event_id": event["event_id"],
        "stream": "demo",
        "model_name": "default",
        "model_version": 1,
        "model_learned": 0,
        "served": True,
        "prediction": prediction,
        "probabilities": probabilities,
        "features": row,
        "event_time_ms": event["event_time_ms"],
        "predicted_at_ms": event["event_time_ms"],
        "latency_ms": 0.0,
        "ingested_at_ms": None,
        "source_partition": 0,
        "source_offset": event["event_time_ms"],
        "segment": event["region"],
    }


def _record(topic: str, offset: int, value: dict[str, Any]) -> InRecord:
    return InRecord(topic, 0, offset, value["event_id"], value, 0, [], b"")


def change_begins(kind: str, change_at: int) -> int:
    """Where the change starts: a gradual one is centred on ``change_at`` and blends in from half a width before."""
    return change_at - GRADUAL_WIDTH // 2 if kind == "gradual" else change_at


def first_detection(fired: list[Fired], kind: str, after: int) -> int | None:
    """Events from the change to the first firing alert of ``kind`` at or after it."""
    return next((f.index - after for f in fired if f.kind == kind and f.status == "firing" and f.index >= after), None)


__all__ = ["EXPECTED_KIND", "Fired", "change_begins", "draws", "first_detection", "run"]

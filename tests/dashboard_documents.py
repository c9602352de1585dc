"""A real ``Monitor`` with label-free estimation on and a production history, for tests of its dashboard document.

The OpenAPI test checks its document against the documented schema and the browser test renders it: both see
what the monitoring service really answers, not only the hand-made ``tests/browser/sample_dashboard.json``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from eddy.contracts.monitoring import EstimationSpec
from eddy.ml.roles import CHALLENGER, CHAMPION, PROMOTED, StreamRoles, VersionKey, model_event
from eddy.services.monitoring.handlers import Monitor

from tests.records import demo_contract, record

NOW_S = 1_795_400_000.0
EVENTS = 300
LABELED_FIRST = 150  # labeled before the predictions below: the calibration set, and the reference


def _prediction(i: int, p: float) -> dict[str, Any]:
    at_ms = int(NOW_S * 1000) - 10_000 + i
    return {
        "event_id": f"e{i}", "stream": "demo", "model_name": "default", "model_version": 1, "served": True,
        "prediction": p >= 0.5, "probabilities": {"true": p, "false": 1.0 - p}, "predicted_at_ms": at_ms,
        "ingested_at_ms": at_ms - 8, "segment": "north" if i % 2 else "south",
    }  # fmt: skip


def _history(monitor: Monitor) -> None:
    """Registered, a 10% canary trial of version 2, its promotion by alice."""
    v1, v2 = VersionKey("default", 1), VersionKey("default", 2)
    start = int(NOW_S * 1000) - 3_600_000
    for event_type, table, canary, at in [
        ("registered", {v1: CHAMPION}, 0.0, start),
        ("registered", {v1: CHAMPION, v2: CHALLENGER}, 0.1, start + 600_000),
        (PROMOTED, {v1: "shadow", v2: CHAMPION}, 0.0, start + 1_800_000),
    ]:
        details = {**StreamRoles("demo", table, canary).to_details(), "reason": "trial won", "by": "alice"}
        monitor.on_model_event(model_event("demo", v2, event_type, "model_registry", details, at_ms=at))


def estimating_monitor() -> Monitor:
    """The demo stream's monitor, estimation on (windows of 100), after 300 predictions and their labels, ticked."""
    demo = demo_contract()
    spec = EstimationSpec(window=100, calibration_window=100)
    monitor = Monitor(replace(demo, monitoring=replace(demo.monitoring, estimated_quality=spec)), clock=lambda: NOW_S)
    _history(monitor)
    predictions = [_prediction(i, 0.1 + 0.8 * ((i * 37) % 100) / 100) for i in range(EVENTS)]
    truths = [(i * 7) % 10 < 8 for i in range(EVENTS)]
    pairs = zip(predictions, truths, strict=True)
    labeled = [{**p, "label": y, "label_time_ms": 0, "joined_at_ms": 0} for p, y in pairs]
    monitor([record("demo.labeled", v, offset=i) for i, v in enumerate(labeled[:LABELED_FIRST])])
    monitor([record("demo.predictions", v, offset=i) for i, v in enumerate(predictions)])
    monitor([record("demo.labeled", v, offset=i) for i, v in enumerate(labeled[LABELED_FIRST:], LABELED_FIRST)])
    monitor.tick(NOW_S)
    return monitor

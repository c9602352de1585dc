import json
import random
from dataclasses import replace
from typing import Any

from eddy.services.monitoring import metrics as mon_metrics
from eddy.services.monitoring.handlers import Monitor, MonitorConfig
from eddy.services.retraining.handlers import RequestRetrain

from tests.keys import TEST_KEYS
from tests.records import demo_contract, labeled_example, record


def labeled(i: int, correct: bool) -> dict[str, Any]:
    return labeled_example(i, label=correct)


def run(monitor: Monitor, outcomes: list[bool], start: int = 0) -> list[dict[str, Any]]:
    alerts = []
    for n, ok in enumerate(outcomes, start=start):
        alerts += [o.value for o in monitor([record("demo.labeled", labeled(n, ok), offset=n)]).outputs]
    return alerts


def test_concept_drift_fires_once_then_resolves() -> None:
    rng = random.Random(1)
    monitor = Monitor(demo_contract(), MonitorConfig(resolve_after=1500), clock=lambda: 1.0)
    good = [rng.random() < 0.95 for _ in range(3000)]
    bad = [rng.random() < 0.45 for _ in range(1500)]
    recovered = [rng.random() < 0.95 for _ in range(6000)]
    alerts = run(monitor, good + bad + recovered)
    statuses = [a["status"] for a in alerts]
    # One drift, one alert: de-duplicated while it persists, and the recovery (the error falling again,
    # which ADWIN also flags as a change) resolves it instead of raising it again.
    assert statuses == ["firing", "resolved"]
    first = alerts[0]
    assert first["kind"] == "concept_drift" and first["subject"] == "default"
    assert 3000 <= first["last_offset"] < 4500
    assert first["first_offset"] <= first["last_offset"]
    assert json.loads(first["details"])["model_version"] == 1


def test_no_alert_on_a_stable_stream_and_quality_gauge() -> None:
    rng = random.Random(2)
    monitor = Monitor(demo_contract())
    assert run(monitor, [rng.random() < 0.9 for _ in range(3000)]) == []
    monitor.tick()
    value = mon_metrics.QUALITY.labels("demo", "default", "1", "accuracy", "all")._value.get()
    assert 0.8 < value < 1.0


def test_replayed_labeled_examples_count_once() -> None:
    monitor = Monitor(demo_contract())
    run(monitor, [True] * 10)
    run(monitor, [False] * 10)  # same event ids e0..e9, replayed
    assert monitor.watches[("default", 1)].labeled == 10


def alert(status: str = "firing", kind: str = "concept_drift", raised: int = 5) -> dict[str, Any]:
    return {
        "alert_id": "demo:concept_drift:default",
        "stream": "demo",
        "kind": kind,
        "subject": "default",
        "statistic": "adwin_mean_error",
        "value": 0.3,
        "threshold": 0.002,
        "window": "w",
        "severity": "warning",
        "status": status,
        "first_offset": 1,
        "last_offset": 9,
        "source_topic": "demo.labeled",
        "raised_at_ms": raised,
        "details": json.dumps({"model_version": 3}),
    }


def test_retrain_requested_once_per_firing_alert() -> None:
    handler = RequestRetrain({"demo": demo_contract()}, signer=TEST_KEYS, clock=lambda: 2.0)
    out = handler([record("demo.alerts", alert()), record("demo.alerts", alert())]).outputs
    assert len(out) == 1
    event = out[0].value
    assert out[0].topic == "eddy.model-events" and out[0].key == "demo"
    assert (event["event_type"], event["model_name"], event["model_version"]) == ("retrain_requested", "default", 3)
    evidence = json.loads(event["details"])["evidence"]
    assert evidence == {"topic": "demo.labeled", "partition": -1, "first_offset": 1, "last_offset": 9, "offsets": []}
    assert handler([record("demo.alerts", alert("resolved"))]).outputs == []
    assert handler([record("demo.alerts", alert(kind="data_drift", raised=6))]).outputs == []
    # A new firing within the cooldown (labeled examples after a retrain) asks nothing ...
    assert handler([record("demo.alerts", alert(raised=7))]).outputs == []
    # ... and without a cooldown it asks again.
    contract = demo_contract()
    eager = replace(contract, retraining=replace(contract.retraining, cooldown=0))
    handler = RequestRetrain({"demo": eager}, signer=TEST_KEYS, clock=lambda: 2.0)
    assert len(handler([record("demo.alerts", alert())]).outputs) == 1
    assert len(handler([record("demo.alerts", alert(raised=7))]).outputs) == 1

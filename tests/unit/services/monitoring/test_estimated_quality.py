"""Label-free quality through the monitoring handler: estimates, realized values, errors, the alert, history."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from eddy.contracts.monitoring import EstimationSpec
from eddy.contracts.stream import ContractError, load_contract
from eddy.core.settings import REPO_ROOT
from eddy.ml.roles import CHAMPION, PROMOTED, ROLLED_BACK, StreamRoles, VersionKey, model_event
from eddy.services.monitoring.handlers import Monitor
from prometheus_client import REGISTRY

from bench.estimation_scenarios import ESTIMATED, LABEL_BASED, mean_abs, run
from tests.records import demo_contract

CHANGE_AT = 10_000


@pytest.mark.parametrize("seed", [1, 2])
def test_a_stationary_stream_is_estimated_within_two_points_and_raises_no_alert(seed: int) -> None:
    result = run("stationary", seed=seed)
    errors = result.errors()
    assert len(errors) >= 10 and mean_abs(errors) <= 0.02
    assert not [f for f in result.fired if f.kind == ESTIMATED]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_covariate_shift_is_seen_thousands_of_events_before_its_labels(seed: int) -> None:
    result = run("covariate", seed=seed)
    estimated, labeled = result.first(ESTIMATED, CHANGE_AT), result.first(LABEL_BASED, CHANGE_AT)
    assert estimated is not None and labeled is not None and labeled - estimated >= 2_000
    # The estimate follows the lower accuracy too, not only the alert.
    assert mean_abs(result.errors(after=CHANGE_AT)) <= 0.03


def test_a_concept_drift_is_invisible_until_its_labels_arrive() -> None:
    result = run("concept", seed=1)
    assert mean_abs(result.errors(after=CHANGE_AT)) > 0.05  # the calibrator vouches for the old rule
    estimated = result.first(ESTIMATED, CHANGE_AT)
    assert estimated is not None and estimated >= 5_000  # only once the new rule's labels refit it


def test_settled_windows_show_realized_values_and_set_the_error_metrics() -> None:
    result = run("stationary", seed=3, n=12_000)
    settled = [w for w in result.windows if w.settled]
    assert settled and all(w.realized and w.labeled_share >= 0.9 for w in settled)
    count = REGISTRY.get_sample_value(
        "eddy_estimation_abs_error_count", {"stream": "demo", "model": "default", "metric": "accuracy"}
    )
    assert count is not None and count >= len(settled)
    value = REGISTRY.get_sample_value(
        "eddy_estimated_quality",
        {"stream": "demo", "model": "default", "version": "1", "metric": "accuracy", "bound": "value",
         "segment": "all"},
    )  # fmt: skip
    assert value is not None and 0.8 < value < 1.0


def test_the_estimated_quality_alert_names_its_reference_and_band() -> None:
    result = run("covariate", seed=1, n=12_000, spec=EstimationSpec(window=500, calibration_window=1000))
    (alert,) = [a for a in result.alerts if a["kind"] == ESTIMATED and a["status"] == "firing"]
    assert alert["subject"] == "default" and alert["statistic"] == "estimated_accuracy"
    assert alert["source_topic"] == "demo.predictions"
    assert '"reference_accuracy"' in alert["details"] and '"low"' in alert["details"]


def test_the_document_holds_estimates_and_the_production_history() -> None:
    monitor = Monitor(demo_contract(), clock=lambda: 10.0)
    v1, v2 = VersionKey("default", 1), VersionKey("default", 2)
    for event_type, key, table, at in [
        ("registered", v1, {v1: CHAMPION}, 1),
        (PROMOTED, v2, {v1: "archived", v2: CHAMPION}, 5),
        (ROLLED_BACK, v1, {v1: CHAMPION, v2: "archived"}, 9),
    ]:
        details = StreamRoles("demo", table, 0.0).to_details()
        monitor.on_model_event(model_event("demo", key, event_type, "model_registry", details, at_ms=at))
    monitor.tick(10.0)
    history = monitor.document["history"]
    assert [(p["champion"], p["cause"], p["from_ms"], p["until_ms"]) for p in history] == [
        ("default@1", "registered", 1, 5),
        ("default@2", PROMOTED, 5, 9),
        ("default@1", ROLLED_BACK, 9, None),
    ]


def test_estimation_needs_a_binary_task(tmp_path: Path) -> None:
    for name in ("demo.yaml", "demo.avsc"):
        shutil.copy(REPO_ROOT / "schemas/streams" / name, tmp_path / name)
    contract = tmp_path / "demo.yaml"
    text = contract.read_text()
    assert "estimated_quality" in text and "task: binary" in text
    contract.write_text(text.replace("task: binary", "task: regression"))
    with pytest.raises(ContractError, match="needs a binary task"):
        load_contract(contract)

from pathlib import Path

import pytest
from eddy.contracts.stream import ModelSpec
from eddy.core.settings import Settings, settings_table
from eddy.ml.models import (
    ModelSpecError,
    ModelState,
    SnapshotError,
    build_estimator,
    load_snapshot_estimator,
    spec_from_json,
)
from eddy.runtime.dlq import DeadLetter, read_dlq_headers

from tests.keys import TEST_KEYS
from tests.records import demo_contract


def spec(*steps: tuple[str, dict]) -> ModelSpec:
    return ModelSpec("m", tuple(steps), ("x0",))


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (("os.system", {}), "is not a river estimator"),
        (("linear_model.Nope", {}), "has no class 'Nope'"),
        (("nothing.Here", {}), "is not a river estimator"),
        (("linear_model.LogisticRegression", {"bogus": 1}), "bad parameters for linear_model.LogisticRegression"),
    ],
)
def test_bad_specs_fail_at_load(step: tuple[str, dict], message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        build_estimator(spec(step))


def test_nested_estimator_parameters() -> None:
    model = build_estimator(spec(("linear_model.LogisticRegression", {"optimizer": {"optim.SGD": {"lr": 0.5}}})))
    assert type(model.optimizer).__name__ == "SGD"
    assert model.optimizer.learning_rate == 0.5


def test_snapshot_round_trip_and_checksum() -> None:
    state = ModelState.fresh("demo", demo_contract().champion)
    state.estimator.learn_one({"x0": 1.0, "x1": 1.0, "x2": 1.0}, True)
    state.learned_count = 1
    snap = state.to_snapshot_record(TEST_KEYS, "abc")
    model = load_snapshot_estimator(snap, TEST_KEYS)
    assert model.predict_proba_one({"x0": 1.0, "x1": 1.0, "x2": 1.0}) == state.estimator.predict_proba_one(
        {"x0": 1.0, "x1": 1.0, "x2": 1.0}
    )
    assert spec_from_json(snap["spec"]) == state.spec
    with pytest.raises(SnapshotError, match="does not match the content"):
        load_snapshot_estimator({**snap, "artifact": snap["artifact"] + b"x"}, TEST_KEYS)
    with pytest.raises(SnapshotError, match="checksum"):
        load_snapshot_estimator({**snap, "sha256": "0" * 64}, TEST_KEYS)


def test_settings_from_env_and_table() -> None:
    s = Settings.from_env({"EDDY_STREAMS": "a, b", "EDDY_BATCH_SIZE": "7", "EDDY_STATE_DIR": "/tmp/x"})
    assert s.streams == ("a", "b") and s.batch_size == 7 and s.state_dir == Path("/tmp/x")
    with pytest.raises(ValueError, match="batch_size"):
        Settings.from_env({"EDDY_BATCH_SIZE": "many"})
    assert {row[0] for row in settings_table()} >= {"EDDY_BOOTSTRAP_SERVERS", "EDDY_SCHEMA_REGISTRY_URL"}


def test_dlq_headers_round_trip() -> None:
    letter = DeadLetter("s.events", 1, 2, b"k", b"v", [("user", b"h")], 3, "stage", "why", "Err", "msg")
    headers = letter.dlq_headers(now_ms=9)
    meta = read_dlq_headers(headers)
    assert meta["reason"] == "why" and meta["source.topic"] == "s.events" and meta["time"] == "9"
    assert ("user", b"h") in headers


def test_configuration_doc_lists_every_setting() -> None:
    from eddy.core.settings import REPO_ROOT

    text = (REPO_ROOT / "docs/configuration.md").read_text()
    missing = [env for env, _, _ in settings_table() if f"`{env}`" not in text]
    assert not missing, f"docs/configuration.md is missing {missing}"


def test_service_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from eddy.services.learning.config import join_limits
    from eddy.services.monitoring.config import monitor_config

    monkeypatch.setenv("EDDY_LEARNING_MAX_PENDING", "12")
    monkeypatch.setenv("EDDY_MONITORING_RESOLVE_AFTER", "34")
    assert join_limits().max_pending == 12
    assert monitor_config().resolve_after == 34
    monkeypatch.setenv("EDDY_MONITORING_HISTORY", "wide")
    with pytest.raises(ValueError, match="EDDY_MONITORING_HISTORY"):
        monitor_config()

"""The MLflow mirror on MLflow's local file store: what a sync writes, that a second one writes nothing, how a
tracking server that is down is retried and counted, and the pyfunc export's signature checks."""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from eddy.ml.models import ModelState, SnapshotError, predict_batch
from eddy.stack.embedded import free_port

from tests.keys import FORGER_KEYS, TEST_KEYS, forged_pickle
from tests.records import demo_contract

mlflow = pytest.importorskip("mlflow", reason="the MLflow extra is not installed: pip install 'eddy[mlflow]'")
from eddy.integrations.mlflow import MlflowMirror, connect, export_pyfunc, sync  # noqa: E402
from eddy.integrations.mlflow_retry import FAILURES, MirrorUnavailable, Retry  # noqa: E402
from eddy.integrations.mlflow_source import RegistrySource  # noqa: E402
from eddy.ml.artifacts import ArtifactRefused  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

STREAM = "demo"
TEST_KEYS_SETTING = "test-key:" + base64.b64encode(TEST_KEYS.keys["test-key"]).decode()


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # What connect() would set for the process, set here so that it is undone after each test.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")


def trained_state(version: int, seed: int) -> ModelState:
    state = ModelState.fresh(STREAM, demo_contract().champion, version)
    rng = random.Random(seed)
    for _ in range(200):
        x = {"x0": rng.uniform(0, 10), "x1": rng.uniform(0, 10), "x2": rng.uniform(0, 10)}
        state.estimator.learn_one(x, x["x0"] + rng.gauss(0, 1) > 5)
    return state


def rows(n: int, seed: int = 7) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{"x0": rng.uniform(0, 10), "x1": rng.uniform(0, 10), "x2": rng.uniform(0, 10)} for _ in range(n)]


class FakeRegistry:
    """The model registry's read API over an httpx mock transport; the test changes ``aliases`` between syncs."""

    def __init__(self) -> None:
        spec = demo_contract().champion.to_json()
        self.aliases = {"default@1": "champion", "default@2": "challenger"}
        self.versions = {
            f"default@{n}": {
                "name": "default",
                "version": n,
                "spec": spec,
                "sha256": "0" * 64,
                "created_by": "retraining",
                "created_at_ms": 1_700_000_000_000 + n,
                "parent": f"default@{n - 1}" if n > 1 else None,
                "metrics": {"holdout": {"accuracy": 0.8 + n / 100, "n": 300}},
                "learned_count": 300 * n,
                "reason": "drift",
            }
            for n in (1, 2)
        }
        self.experiments = [
            {
                "id": "bt-1",
                "stream": STREAM,
                "title": "champion against challenger",
                "created_by": "ann",
                "created_at_ms": 1_700_000_100_000,
                "models": ["default@1", "default@2"],
                "label_delay": "observed",
                "data": {"source": "validated", "from": None, "until": None, "events": 3000, "labels": 3000},
                "metrics": {"default@1": {"accuracy": 0.81}, "default@2": {"accuracy": 0.84}},
                "report": None,
                "output": None,
            }
        ]

    def answer(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        assert params["stream"] == STREAM
        if request.url.path == "/api/models":
            listed = [{"version": k, "alias": a} for k, a in self.aliases.items()]
            return httpx.Response(200, json={"stream": STREAM, "versions": listed})
        if request.url.path == "/api/models/show":
            key = params["version"]
            return httpx.Response(200, json={**self.versions[key], "alias": self.aliases[key]})
        if request.url.path == "/api/experiments":
            return httpx.Response(200, json={"stream": STREAM, "experiments": list(reversed(self.experiments))})
        return httpx.Response(404, json={"error": "no such route"})

    def source(self) -> RegistrySource:
        return RegistrySource("http://registry", transport=httpx.MockTransport(self.answer))


def store_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def failures(operation: str) -> float:
    return FAILURES.labels(operation)._value.get()


def test_a_sync_mirrors_versions_aliases_and_backtests_and_a_second_one_changes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    uri = f"file:{store}"
    registry = FakeRegistry()
    mirror = MlflowMirror(connect(uri))

    first = sync(STREAM, registry.source(), mirror)
    assert (first.versions_created, first.backtests_created, first.aliases_changed) == (2, 1, 2)

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("eddy/demo")
    (backtest,) = client.search_runs([experiment.experiment_id], "tags.`eddy.kind` = 'backtest'")
    assert backtest.info.run_name == "champion against challenger"
    assert backtest.data.params["models.1"] == "default@2" and backtest.data.params["data.events"] == "3000"
    assert backtest.data.metrics == {"default_v1.accuracy": 0.81, "default_v2.accuracy": 0.84}
    assert backtest.info.start_time == 1_700_000_100_000
    assert "experiment.json" in {a.path for a in client.list_artifacts(backtest.info.run_id)}

    v2 = client.get_model_version_by_alias("demo.default", "challenger")
    assert v2.tags["eddy.version"] == "default@2" and v2.tags["eddy.alias"] == "challenger"
    run = client.get_run(v2.run_id)
    assert run.data.metrics["holdout.accuracy"] == pytest.approx(0.82)
    assert run.data.params["parent"] == "default@1" and run.data.params["spec.features.0"] == "x0"
    assert client.get_model_version_by_alias("demo.default", "champion").tags["eddy.version"] == "default@1"

    before = store_digest(store)
    again = sync(STREAM, registry.source(), MlflowMirror(connect(uri)))
    assert not again.changed() and (again.versions_found, again.backtests_found) == (2, 1)
    assert store_digest(store) == before  # not a byte written

    # A promotion in eddy: v2 champion, v1 a shadow. MLflow's aliases follow; no challenger is left.
    registry.aliases = {"default@1": "shadow", "default@2": "champion"}
    promoted = sync(STREAM, registry.source(), MlflowMirror(connect(uri)))
    assert (promoted.versions_created, promoted.aliases_changed) == (0, 2)
    model = client.get_registered_model("demo.default")
    assert model.aliases == {"champion": str(v2.version)}
    assert client.get_model_version("demo.default", "1").tags["eddy.alias"] == "shadow"


def test_a_run_cut_short_is_made_again_and_a_failing_step_is_retried(tmp_path: Path) -> None:
    uri = f"file:{tmp_path / 'mlruns'}"
    client = connect(uri)
    mirror = MlflowMirror(client, Retry(attempts=3, sleep=lambda _s: None))
    half = client.create_run(mirror.experiment_id(STREAM), tags={"eddy.id": "backtest:bt-1"})

    real_create_run = client.create_run
    calls = []

    def create_run_failing_once(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("API request failed: connection reset")  # a 5xx-like failure
        return real_create_run(*args, **kw)

    client.create_run = create_run_failing_once  # type: ignore[method-assign]
    before = failures("backtest")
    assert mirror.mirror_backtest(STREAM, FakeRegistry().experiments[0])
    assert failures("backtest") == before + 1 and len(calls) == 2
    runs = client.search_runs([mirror.experiment_id(STREAM)], "tags.`eddy.id` = 'backtest:bt-1'")
    assert [r.data.tags.get("eddy.mirrored") for r in runs] == ["true"]
    assert client.get_run(half.info.run_id).info.lifecycle_stage == "deleted"


def test_a_tracking_server_that_is_down_is_retried_counted_and_given_up_on(tmp_path: Path) -> None:
    pauses: list[float] = []
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    mirror = MlflowMirror(connect(down), Retry(attempts=3, first_pause_s=0.25, sleep=pauses.append))
    before = failures("version")
    with pytest.raises(MirrorUnavailable, match="3 attempts at version"):
        sync(STREAM, FakeRegistry().source(), mirror)
    assert failures("version") == before + 3
    assert pauses == [0.25, 0.5]


def test_an_exported_pyfunc_predicts_as_eddy_does_and_needs_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = trained_state(2, seed=1)
    snapshot = state.to_snapshot_record(TEST_KEYS)
    out = export_pyfunc(snapshot, demo_contract(), TEST_KEYS, tmp_path / "model")
    assert (out / "MLmodel").exists() and not list(out.rglob("*.pkl"))  # no pickle of MLflow's own

    monkeypatch.delenv("EDDY_SIGNING_KEYS", raising=False)
    monkeypatch.delenv("EDDY_SIGNING_KEYS_FILE", raising=False)
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path / "no-state"))
    with pytest.raises(Exception, match="EDDY_SIGNING_KEYS"):
        mlflow.pyfunc.load_model(str(out))

    monkeypatch.setenv("EDDY_SIGNING_KEYS", TEST_KEYS_SETTING)
    model = mlflow.pyfunc.load_model(str(out))
    events = rows(100)
    got = model.predict(pd.DataFrame(events))
    expected = predict_batch(state.estimator, "binary", events)
    assert list(got["prediction"]) == [p for p, _ in expected]
    assert list(got["probabilities"]) == [q for _, q in expected]


def test_a_forged_model_is_neither_exported_nor_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forged = trained_state(2, seed=1).to_snapshot_record(FORGER_KEYS)
    with pytest.raises(SnapshotError, match="does not match"):
        export_pyfunc(forged, demo_contract(), TEST_KEYS, tmp_path / "forged")
    assert not (tmp_path / "forged").exists()

    # A pipeline swapped into an exported model's directory, without the key: refused before it is unpickled.
    out = export_pyfunc(
        trained_state(2, seed=1).to_snapshot_record(TEST_KEYS), demo_contract(), TEST_KEYS, tmp_path / "m"
    )
    marker = tmp_path / "ran"
    (signed,) = (out / "artifacts").iterdir()
    payload = forged_pickle(marker)
    signed.write_bytes(b"EDDY-SIGNED " + FORGER_KEYS.sign(payload).encode() + b"\n" + payload)
    monkeypatch.setenv("EDDY_SIGNING_KEYS", TEST_KEYS_SETTING)
    with pytest.raises(ArtifactRefused):
        mlflow.pyfunc.load_model(str(out))
    assert not marker.exists()


def test_the_cli_asks_for_a_tracking_uri_and_a_new_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eddy.cli.main import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["mlflow", "sync", "demo", "--url", "http://registry"]) == 2
    assert "--tracking-uri" in capsys.readouterr().err
    assert main(["mlflow", "sync", "nope", "--tracking-uri", "file:x"]) == 2
    assert "unknown stream 'nope'" in capsys.readouterr().err
    assert main(["mlflow", "export", "demo", "default@1", "--out", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_the_sidecar_keeps_going_when_the_registry_or_mlflow_is_away(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eddy.cli import mlflow as cli_mlflow
    from eddy.cli.main import main

    rounds: list[float] = []

    def sleep(seconds: float) -> None:
        rounds.append(seconds)
        if len(rounds) == 2:
            raise KeyboardInterrupt  # the operator stops it

    monkeypatch.setattr(cli_mlflow.time, "sleep", sleep)
    down = f"http://127.0.0.1:{free_port()}"
    args = ["mlflow", "sync", "demo", "--tracking-uri", down, "--url", down, "--no-models", "--every", "30"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert rounds == [30, 30] and err.count("cannot reach the model registry") == 2

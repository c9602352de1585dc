"""MLflow round trip (issue 24): a backtest and a promotion in eddy, ``eddy mlflow sync`` to a local file store,
both read back through MLflow's own client, and the champion as a pyfunc model predicting what eddy serves.

On the broker with the model registry and the inference service (not the whole stack): the registry records
the backtest and holds the versions; inference serves the promoted champion over its prediction API.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from eddy.cli.main import main
from eddy.core.settings import Settings
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, StreamTopics
from eddy.ml.models import build_estimator
from eddy.runtime.auth import CLIENT_KEY_ENV

from tests.helpers import ValueWriter, create_topics, produce_values, sample_events, sample_labels, service, wait_until
from tests.integration.test_model_registry import candidate
from tests.records import demo_contract

mlflow = pytest.importorskip("mlflow", reason="the MLflow extra is not installed: pip install 'eddy[mlflow]'")

pytestmark = pytest.mark.integration


def trained_candidate(settings: Settings, seed: int) -> dict[str, Any]:
    """A challenger of the demo model that has learned something, signed with the stack's keyring."""
    estimator = build_estimator(demo_contract().champion)
    rng = random.Random(seed)
    for _ in range(300):
        x = {"x0": rng.uniform(0, 10), "x1": rng.uniform(0, 10), "x2": rng.uniform(0, 10)}
        estimator.learn_one(x, x["x0"] + x["x1"] + rng.gauss(0, 2) > 10)
    return {
        **candidate(settings, seed, estimator=estimator),
        "metrics": '{"holdout": {"accuracy": 0.91, "n": 300}}',
        "reason": "test: a better model",
    }


def eddy(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """One ``eddy`` command in this process (MLflow and eddy imported once): its exit code, stdout and stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_backtest_and_promotion_round_trip_through_mlflow(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (stream,) = settings.streams
    for name, value in {**settings.kafka_env(), CLIENT_KEY_ENV: "", "MLFLOW_ALLOW_FILE_STORE": "true"}.items():
        monkeypatch.setenv(name, value)
    # What `eddy mlflow` sets for its process when unset: set here, so that it is undone after the test.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    topics = StreamTopics(stream)
    create_topics(settings)
    produce_values(settings, topics.validated, sample_events(0, 400))
    produce_values(settings, topics.feedback, sample_labels(0, 400))
    store = tmp_path / "mlruns"
    uri = f"file:{store}"

    with service("model_registry", settings, tmp_path) as (_registry, registry, _log):
        models = f"{registry}/api/models"
        wait_until(lambda: httpx.get(models, params={"stream": stream}).status_code == 200, 40, 0.2, "registry")
        ValueWriter(settings, MODEL_CANDIDATES_TOPIC, key_field="stream").send([trained_candidate(settings, 1)])
        wait_until(lambda: len(httpx.get(models, params={"stream": stream}).json()["versions"]) == 2, 30, 0.2, "v2")
        promoted = httpx.post(f"{models}/promote", json={"stream": stream, "version": "default@2"}, timeout=10)
        assert promoted.status_code == 200, promoted.text

        monkeypatch.setenv("EDDY_MODEL_REGISTRY_URL", registry)
        report = tmp_path / "report.html"
        code, out, err = eddy(capsys, "backtest", stream, "--model", "default@2", "--report", str(report))
        assert code == 0, err
        assert "experiment" in out

        code, out, err = eddy(capsys, "mlflow", "sync", stream, "--tracking-uri", uri)
        assert code == 0, err
        assert "backtests 1 mirrored" in out and "versions 2 mirrored" in out
        code, out, err = eddy(capsys, "mlflow", "sync", stream, "--tracking-uri", uri, "--no-models")
        assert code == 0, err
        assert "backtests 0 mirrored, 1 already there; versions 0 mirrored, 2 already there; aliases 0" in out

        # Read back through MLflow's own client.
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment = client.get_experiment_by_name(f"eddy/{stream}")
        (run,) = client.search_runs([experiment.experiment_id], "tags.`eddy.kind` = 'backtest'")
        assert run.data.params["models.0"] == "default@2" and run.data.params["data.source"] == "validated"
        assert run.data.params["data.events"] == "400"
        assert 0.0 <= run.data.metrics["default_v2.accuracy"] <= 1.0
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"experiment.json", "report"}
        name = f"{stream}.default"
        versions = {v.tags["eddy.version"]: v for v in client.search_model_versions(f"name = '{name}'")}
        assert set(versions) == {"default@1", "default@2"}
        champion = client.get_model_version_by_alias(name, "champion")
        assert champion.version == versions["default@2"].version and champion.tags["eddy.alias"] == "champion"
        assert client.get_run(champion.run_id).data.metrics["holdout.accuracy"] == pytest.approx(0.91)
        assert set(client.get_registered_model(name).aliases) == {"champion"}

        # The champion as MLflow serves it, against eddy's inference on the same 100 events.
        rng = random.Random(3)
        events = [
            {
                "event_id": f"mf{i}",
                "x0": rng.uniform(0, 10),
                "x1": rng.uniform(0, 10),
                "x2": rng.uniform(0, 10),
                "region": "north",
            }
            for i in range(100)
        ]
        with service("inference", settings, tmp_path) as (_inference, health, _ilog):
            wait_until(lambda: "predict_url" in httpx.get(f"{health}/healthz").json(), 30, 0.2, "predict_url")
            predict = f"{httpx.get(f'{health}/healthz').json()['predict_url']}/v1/streams/{stream}/predict"

            def served() -> list[dict[str, Any]]:
                answer = httpx.post(predict, json=events, timeout=30)
                assert answer.status_code == 200, answer.text
                return list(answer.json()["results"])

            wait_until(lambda: served()[0]["model_version"] == 2, 30, 0.5, "inference serving default@2")
            by_eddy = served()

    keyring = settings.state_dir / "secrets" / "signing-keys.json"
    monkeypatch.delenv("EDDY_SIGNING_KEYS", raising=False)
    monkeypatch.setenv("EDDY_SIGNING_KEYS_FILE", str(keyring))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    by_mlflow = model.predict(pd.DataFrame([{k: e[k] for k in ("x0", "x1", "x2")} for e in events]))
    assert len({r["prediction"] for r in by_eddy}) == 2, "a model that answers both classes"
    assert list(by_mlflow["prediction"]) == [r["prediction"] for r in by_eddy]
    for ours, theirs in zip(by_mlflow["probabilities"], by_eddy, strict=True):
        assert ours == pytest.approx(theirs["probabilities"])

    # `eddy mlflow export` writes the same model to a directory of its own.
    out = tmp_path / "exported"
    code, _, err = eddy(capsys, "mlflow", "export", stream, "default@2", "--out", str(out))
    assert code == 0, err
    again_loaded = mlflow.pyfunc.load_model(str(out))
    assert list(again_loaded.predict(pd.DataFrame(events))["prediction"]) == list(by_mlflow["prediction"])

import hashlib
import itertools
import json
import math
from dataclasses import replace
from typing import Any

from eddy.contracts.retraining import ReleaseBudget, RetrainingSpec
from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.ml.artifacts import verified_unpickle
from eddy.ml.models import build_estimator
from eddy.ml.roles import CHALLENGER_REJECTED, VersionKey, event_details
from eddy.services.retraining.release import check_release
from eddy.services.retraining.trainer import RetrainRequest, Trainer, candidate_id
from eddy.services.retraining.window import Example, Window
from river import linear_model
from river.datasets import synth

from tests.keys import TEST_KEYS
from tests.records import demo_contract

CHAMPION = VersionKey("default", 1)
REQUEST = RetrainRequest("req-1", "demo", "concept_drift", "retraining")


def contract(**retraining: Any) -> StreamContract:
    base = demo_contract()
    return replace(base, retraining=replace(RetrainingSpec(train_window=300), **retraining))


def sea(variant: int, n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    return [({f"x{k}": v for k, v in x.items()}, y) for x, y in synth.SEA(variant=variant, seed=seed).take(n)]


def stale_champion() -> Any:
    """The champion's model, trained before the concept changed and predicting after it."""
    model = build_estimator(demo_contract().champion)
    for x, y in sea(0, 2000, 1):
        model.learn_one(x, y)
    return model


def window(rows: list[tuple[dict[str, Any], Any]], predict: Any, size: int = 300) -> list[Example]:
    w = Window(size)
    for i, (x, y) in enumerate(rows):
        prediction, probabilities = predict(x)
        value = {
            "event_id": f"e{i}",
            "features": x,
            "label": y,
            "prediction": prediction,
            "probabilities": probabilities,
            "served": True,
            "predicted_at_ms": i,
        }
        w.add(Example.of(value, "demo.labeled", i % 2, 10 + 3 * (i // 2)))
    return w.examples()


def stale(model: Any) -> Any:
    def predict(x: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        proba = model.predict_proba_one(x)
        return model.predict_one(x), {str(k).lower(): float(v) for k, v in proba.items()}

    return predict


def steady() -> float:
    """A clock that never moves: the release's latency check is tested on its own, with a clock of its own."""
    return 0.0


def test_a_retrained_challenger_beats_a_stale_champion_and_is_published() -> None:
    examples = window(sea(3, 300, 2), stale(stale_champion()))
    trainer = Trainer(
        contract(),
        signer=TEST_KEYS,
        timer=steady,
        clock=lambda: 1234.5,
        schema_ids=lambda topic: 42,
        code_version="abc",
    )
    outcome = trainer.train(REQUEST, CHAMPION, examples)
    assert outcome.rejected == []
    candidate = outcome.candidate
    assert candidate is not None
    assert candidate["candidate_id"] == candidate_id("req-1", "default")
    assert (candidate["stream"], candidate["model_name"], candidate["parent_version"]) == ("demo", "default", 1)
    assert candidate["alias"] == "shadow" and candidate["created_by"] == "retraining"
    assert candidate["code_version"] == "abc" and candidate["created_at_ms"] == 1_234_500
    assert candidate["reason"] == "concept_drift"
    assert candidate["schema_ids"] == {"demo.labeled": 42}
    assert candidate["learned_count"] == 300
    assert candidate["sha256"] == hashlib.sha256(candidate["artifact"]).hexdigest()
    model = verified_unpickle(candidate["artifact"], candidate["signature"], TEST_KEYS, "candidate")
    assert model.predict_one({"x0": 9.0, "x1": 9.0, "x2": 1.0}) is True
    # Two partitions, each one contiguous range of this version's records.
    assert candidate["training_offsets"] == [
        {"topic": "demo.labeled", "partition": 0, "first_offset": 10, "last_offset": 10 + 3 * 149},
        {"topic": "demo.labeled", "partition": 1, "first_offset": 10, "last_offset": 10 + 3 * 149},
    ]
    metrics = json.loads(candidate["metrics"])
    assert metrics["training"]["count"] == 210 and metrics["training"]["holdout"] == 90
    holdout = metrics["holdout"]
    assert holdout["candidate"]["accuracy"] > holdout["champion"]["accuracy"] + 0.05
    assert holdout["candidate"]["count"] == holdout["champion"]["count"] == 90
    assert "log_loss" in holdout["candidate"] and "log_loss" in holdout["champion"]
    assert holdout["test"]["method"] == "exact" and holdout["test"]["p_value"] < 0.05
    assert metrics["release"]["passed"] is True
    assert set(metrics["release"]["checks"]) == {"valid_outputs", "finite", "latency", "artifact"}


def test_canary_makes_it_a_challenger_and_the_same_request_builds_the_same_candidate() -> None:
    examples = window(sea(3, 300, 2), stale(stale_champion()))
    trainer = Trainer(
        contract(canary=0.1), signer=TEST_KEYS, clock=lambda: 1.0, timer=itertools.count(step=1e-4).__next__
    )
    first, again = trainer.train(REQUEST, CHAMPION, examples), trainer.train(REQUEST, CHAMPION, examples)
    assert first.candidate is not None and again.candidate is not None
    assert first.candidate["alias"] == "challenger"
    assert first.candidate == again.candidate  # deterministic, artifact and all
    assert first.candidate["schema_ids"] == {}


def test_a_candidate_worse_than_the_champion_on_the_holdout_is_rejected() -> None:
    rows = sea(3, 300, 2)
    truth = dict(enumerate(y for _, y in rows))
    # A champion that knows every answer: nothing retrained in 210 examples can match it.
    oracle = iter(range(300))

    def perfect(x: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        y = truth[next(oracle)]
        return y, {"true": float(y), "false": 1.0 - float(y)}

    examples = window(rows, perfect)
    outcome = Trainer(contract(), signer=TEST_KEYS, timer=steady, clock=lambda: 5.0).train(REQUEST, CHAMPION, examples)
    assert outcome.candidate is None
    (event,) = outcome.rejected
    details = event_details(event)
    assert event["event_type"] == CHALLENGER_REJECTED and event["actor"] == "retraining"
    assert (event["model_name"], event["model_version"]) == ("default", 0)
    assert details["check"] == "holdout" and details["request"] == "req-1"
    assert details["parent"] == "default@1"
    assert details["evidence"]["holdout"]["champion"]["accuracy"] == 1.0
    assert details["candidate_id"] == candidate_id("req-1", "default")


class NaNClassifier:
    """A broken model: it learns, but every probability it gives is NaN."""

    def learn_one(self, x: dict[str, Any], y: Any) -> None:
        pass

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        return {True: math.nan, False: math.nan}

    def predict_one(self, x: dict[str, Any]) -> Any:
        return True


class SilentClassifier(NaNClassifier):
    """Never answers: no class at all."""

    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        return {}


def test_release_checks_reject_nan_and_missing_answers() -> None:
    probe = [x for x, _ in sea(0, 50, 3)]
    nan = check_release(NaNClassifier(), "binary", probe, ReleaseBudget(), TEST_KEYS, steady)
    assert {"finite", "valid_outputs"} <= set(nan.failed)
    assert nan.checks["finite"]["non_finite"] == 50
    silent = check_release(SilentClassifier(), "binary", probe, ReleaseBudget(), TEST_KEYS, steady)
    assert silent.failed == ["valid_outputs"] and silent.checks["valid_outputs"]["invalid"] == 50


def test_release_checks_enforce_the_latency_and_size_budgets() -> None:
    model = linear_model.LogisticRegression()
    for x, y in sea(0, 100, 4):
        model.learn_one(x, y)
    probe = [x for x, _ in sea(0, 300, 5)]
    ticks = itertools.count(step=0.010)  # every prediction takes 10 ms by this clock
    slow = check_release(
        model, "binary", probe, ReleaseBudget(probe=100, max_latency_ms=5.0), TEST_KEYS, lambda: next(ticks)
    )
    assert slow.failed == ["latency"]
    assert slow.checks["latency"]["p99_ms"] > 5.0 and slow.checks["valid_outputs"]["probed"] == 100
    big = check_release(model, "binary", probe, ReleaseBudget(max_artifact_bytes=100), TEST_KEYS, steady)
    assert big.failed == ["artifact"] and big.checks["artifact"]["bytes"] > 100
    regression = linear_model.LinearRegression()
    assert check_release(regression, "regression", probe, ReleaseBudget(), TEST_KEYS, steady).passed


def test_release_failures_reject_the_candidate_with_the_evidence() -> None:
    examples = window(sea(3, 300, 2), stale(stale_champion()))
    trainer = Trainer(contract(), signer=TEST_KEYS, timer=steady, clock=lambda: 5.0, build=lambda spec: NaNClassifier())
    outcome = trainer.train(REQUEST, CHAMPION, examples)
    assert outcome.candidate is None
    (event,) = outcome.rejected
    details = event_details(event)
    assert details["check"].startswith("release:") and "finite" in details["check"]
    assert details["evidence"]["release"]["checks"]["finite"]["passed"] is False

    ticks = itertools.count(step=0.050)
    slow = Trainer(contract(), signer=TEST_KEYS, clock=lambda: 5.0, timer=lambda: next(ticks)).train(
        REQUEST, CHAMPION, examples
    )
    assert slow.candidate is None and event_details(slow.rejected[0])["check"] == "release:latency"


def test_other_candidates_compete_and_those_missing_features_are_skipped() -> None:
    base = demo_contract()
    tree = ModelSpec("tree", (("tree.HoeffdingTreeClassifier", {}),), ("x0", "x1", "x2"))
    regional = ModelSpec("regional", (("linear_model.LogisticRegression", {}),), ("x0", "region"))
    prior = ModelSpec("prior", (("dummy.PriorClassifier", {}),), ("x0",))
    c = replace(
        base,
        models=(*base.models, tree, regional, prior),
        retraining=RetrainingSpec(train_window=300, candidates=("tree", "regional", "prior")),
    )
    examples = window(sea(3, 300, 2), stale(stale_champion()))
    outcome = Trainer(c, signer=TEST_KEYS, timer=steady, clock=lambda: 5.0).train(REQUEST, CHAMPION, examples)
    assert set(outcome.skipped) == {"regional"} and "region" in outcome.skipped["regional"]
    assert [r.spec.name for r in outcome.results] == ["default", "tree", "prior"]
    # The constant predictor is worse than the stale champion on the holdout: rejected, never published.
    rejected = {event_details(e)["candidate_id"]: event_details(e)["check"] for e in outcome.rejected}
    assert rejected == {candidate_id("req-1", "prior"): "holdout"}
    assert outcome.candidate is not None and outcome.candidate["model_name"] in {"default", "tree"}
    assert len(json.loads(outcome.candidate["metrics"])["candidates"]) == 3


def test_regression_candidates_are_judged_on_absolute_error() -> None:
    base = demo_contract()
    steps = (("preprocessing.StandardScaler", {}), ("linear_model.LinearRegression", {"intercept_lr": 0.1}))
    spec = ModelSpec("reg", steps, ("x0", "x1", "x2"))
    c = replace(base, task="regression", models=(spec,), retraining=RetrainingSpec(train_window=300))
    rows = [({"x0": x["x0"], "x1": x["x1"], "x2": x["x2"]}, 2 * x["x0"] - x["x1"] + 1.0) for x, _ in sea(0, 300, 6)]

    def off_by_three(x: dict[str, Any]) -> tuple[float, None]:
        return 2 * x["x0"] - x["x1"] + 4.0, None

    examples = window(rows, off_by_three)
    outcome = Trainer(c, signer=TEST_KEYS, timer=steady, clock=lambda: 5.0).train(
        REQUEST, VersionKey("reg", 1), examples
    )
    assert outcome.candidate is not None
    holdout = json.loads(outcome.candidate["metrics"])["holdout"]
    assert holdout["champion"]["mae"] == 3.0
    assert holdout["candidate"]["mae"] < 3.0 and "rmse" in holdout["candidate"]
    assert holdout["test"]["method"] == "t"


def test_too_few_examples_trains_nothing() -> None:
    examples = window(sea(3, 1, 2), stale(stale_champion()))
    outcome = Trainer(contract(), signer=TEST_KEYS, timer=steady, clock=lambda: 5.0).train(REQUEST, CHAMPION, examples)
    assert outcome.candidate is None and outcome.rejected == [] and "*" in outcome.skipped

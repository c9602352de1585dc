"""The retraining handler end to end, with synthetic labeled examples, alerts and registry events."""

import itertools
import json
import pickle
import random
from dataclasses import replace
from typing import Any

from eddy.contracts.retraining import PromotionPolicy, QualityTrigger, RetrainingSpec
from eddy.contracts.stream import StreamContract
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC
from eddy.ml.models import build_estimator
from eddy.ml.roles import (
    ARCHIVE_REQUESTED,
    ARCHIVED_EVENT,
    PROMOTED,
    PROMOTION_REQUESTED,
    REGISTERED,
    RETRAIN_REQUESTED,
    ROLLBACK_REQUESTED,
    TRIAL_RESULT,
    StreamRoles,
    VersionKey,
    event_details,
    model_event,
)
from eddy.runtime.loop import BatchResult, InRecord, OutRecord
from eddy.services.retraining.handlers import Retraining
from eddy.services.retraining.trainer import candidate_id
from eddy.services.retraining.triggers import request_id
from river.datasets import synth

from tests.keys import TEST_KEYS
from tests.records import demo_contract

T0 = 1_700_000_000.0
V1, V2 = VersionKey("default", 1), VersionKey("default", 2)


def contract(**retraining: Any) -> StreamContract:
    spec = RetrainingSpec(
        train_window=300, cooldown=100, promotion=PromotionPolicy(shadow_labels=200, rollback_labels=300)
    )
    return replace(demo_contract(), retraining=replace(spec, **retraining))


def sea(variant: int, seed: int) -> Any:
    return (({f"x{k}": v for k, v in x.items()}, y) for x, y in synth.SEA(variant=variant, seed=seed))


def stale_model() -> Any:
    """Trained on SEA's first concept, and never again."""
    model = build_estimator(demo_contract().champion)
    for x, y in itertools.islice(sea(0, 1), 2000):
        model.learn_one(x, y)
    return model


class Sim:
    """A handler with a fake clock and topics that number their records."""

    def __init__(self, c: StreamContract | None = None, **options: Any) -> None:
        self.now = T0
        options.setdefault("timer", itertools.count(step=1e-5).__next__)
        self.handler = Retraining({"demo": c or contract()}, signer=TEST_KEYS, clock=lambda: self.now, **options)
        self.offsets: dict[str, int] = {}
        self.event = 0

    def record(self, topic: str, value: dict[str, Any], ts_ms: int | None = None, partition: int = 0) -> InRecord:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        ts = int(self.now * 1000) if ts_ms is None else ts_ms
        return InRecord(topic, partition, offset, value.get("event_id"), value, ts, [], b"raw")

    def __call__(self, *records: InRecord) -> BatchResult:
        return self.handler(list(records))

    def labeled(self, key: VersionKey, i: int, x: dict[str, Any], y: Any, model: Any, **kw: Any) -> InRecord:
        prediction = model(x) if callable(model) else model.predict_one(x)
        value = {
            "event_id": f"e{i}",
            "stream": "demo",
            "model_name": key.name,
            "model_version": key.version,
            "model_learned": 0,
            "prediction": prediction,
            "probabilities": None,
            "features": x,
            "label": y,
            "event_time_ms": int(self.now * 1000),
            "predicted_at_ms": int(self.now * 1000),
            "label_time_ms": int(self.now * 1000),
            "joined_at_ms": int(self.now * 1000),
            "segment": None,
            "served": kw.pop("served", True),
        }
        return self.record("demo.labeled", value, **kw)

    def events(self, data: Any, n: int, models: dict[VersionKey, Any], **kw: Any) -> list[OutRecord]:
        """``n`` events of ``data``, each labeled once per version in ``models``, one batch per event."""
        out: list[OutRecord] = []
        for x, y in itertools.islice(data, n):
            self.event += 1
            self.now += 0.01
            out += self(*[self.labeled(k, self.event, x, y, m, **kw) for k, m in models.items()]).outputs
        return out

    def registry(self, event_type: str, key: VersionKey, table: dict[VersionKey, str], **details: Any) -> BatchResult:
        roles = StreamRoles("demo", table)
        event = model_event(
            "demo",
            key,
            event_type,
            "model_registry",
            {**roles.to_details(), **details},
            event_id=f"{event_type}-{key}-{len(self.offsets)}-{self.offsets.get(MODEL_EVENTS_TOPIC, 0)}",
            at_ms=int(self.now * 1000),
        )
        return self(self.record(MODEL_EVENTS_TOPIC, event))

    def alert(self, raised_ms: int = 5, kind: str = "concept_drift", ts_ms: int | None = None) -> BatchResult:
        value = {
            "alert_id": f"demo:{kind}:default",
            "stream": "demo",
            "kind": kind,
            "subject": "default",
            "statistic": "adwin_mean_error",
            "value": 0.3,
            "threshold": 0.002,
            "window": "w",
            "severity": "warning",
            "status": "firing",
            "first_offset": 1,
            "last_offset": 9,
            "source_topic": "demo.labeled",
            "raised_at_ms": raised_ms,
            "details": json.dumps({"model_version": 1}),
        }
        return self(self.record("demo.alerts", value, ts_ms))


def of_type(outputs: list[OutRecord], event_type: str) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic == MODEL_EVENTS_TOPIC and o.value["event_type"] == event_type]


def candidates(outputs: list[OutRecord]) -> list[dict[str, Any]]:
    return [o.value for o in outputs if o.topic == MODEL_CANDIDATES_TOPIC]


def test_drift_to_retrain_to_shadow_trial_to_promotion_to_probation() -> None:
    sim = Sim()
    champion = stale_model()
    assert sim.events(sea(0, 2), 300, {V1: champion}) == []
    drifted = sea(3, 2)  # the concept moves: threshold 8 -> 9.5, and monitoring says so
    assert sim.events(drifted, 100, {V1: champion}) == []

    (out,) = sim.alert().outputs
    request = out.value
    assert (out.topic, out.key, request["event_type"]) == (MODEL_EVENTS_TOPIC, "demo", RETRAIN_REQUESTED)
    assert request["actor"] == "retraining" and event_details(request)["reason"] == "concept_drift"
    # The challenger learns the new concept only: it waits for a whole window labeled since the alert.
    assert sim.events(drifted, 299, {V1: champion}) == []
    out = sim.events(drifted, 1, {V1: champion})
    (candidate,) = candidates(out)
    assert [o.key for o in out] == ["demo"]
    offsets = json.loads(candidate["metrics"])["training"]["train_offsets"]
    assert offsets == [{"topic": "demo.labeled", "partition": 0, "first_offset": 400, "last_offset": 609}]
    assert candidate["candidate_id"] == candidate_id(request["event_id"], "default")
    assert candidate["parent_version"] == 1 and candidate["alias"] == "shadow" and candidate["learned_count"] == 300
    assert candidate["reason"] == "concept_drift"

    # The registry registers it as default@2; every event is then labeled for both versions.
    table = {V1: "champion", V2: "shadow"}
    assert sim.registry(REGISTERED, V2, table, candidate_id=candidate["candidate_id"], parent="default@1").outputs == []
    challenger = pickle.loads(candidate["artifact"])
    assert sim.alert(raised_ms=6).outputs == []  # a challenger is on trial: no retrain
    out = sim.events(drifted, 200, {V1: champion, V2: challenger})
    promote, result = (o.value for o in out)
    assert promote["event_type"] == PROMOTION_REQUESTED and promote["model_version"] == 2
    assert event_details(promote)["expected_champion"] == "default@1"
    assert result["event_type"] == TRIAL_RESULT and event_details(result)["decision"] == "promote"

    # Promoted: now on probation against default@1 (a shadow), which it survives.
    table = {V1: "shadow", V2: "champion"}
    assert sim.registry(PROMOTED, V2, table, previous="default@1", probation_labels=300).outputs == []
    out = sim.events(drifted, 300, {V1: champion, V2: challenger})
    archive, result = (o.value for o in out)
    assert archive["event_type"] == ARCHIVE_REQUESTED and archive["model_version"] == 1
    assert event_details(archive)["reason"].startswith("probation passed")
    assert event_details(result)["kind"] == "probation"

    sim.registry(ARCHIVED_EVENT, V1, {V1: "archived", V2: "champion"})
    assert V1 not in sim.handler.streams["demo"].windows
    assert sim.events(drifted, 5, {V1: champion}) == []  # examples of archived versions are ignored
    assert V1 not in sim.handler.streams["demo"].windows


def test_a_forced_promotion_of_a_constant_predictor_is_rolled_back() -> None:
    sim = Sim()
    champion = stale_model()
    data = sea(0, 3)
    sim.events(data, 20, {V1: champion})
    # A user registers and forces a model that always answers False (no candidate id: no shadow trial).
    sim.registry(REGISTERED, V2, {V1: "champion", V2: "shadow"})
    assert sim.handler.streams["demo"].trials.shadow is None
    table = {V1: "shadow", V2: "champion"}
    sim.registry(PROMOTED, V2, table, previous="default@1", reason="user:alice", probation_labels=300)
    out = sim.events(data, 300, {V1: champion, V2: lambda x: False})
    rollback, result = (o.value for o in out)
    assert rollback["event_type"] == ROLLBACK_REQUESTED
    assert event_details(rollback)["to"] == "default@1" and event_details(rollback)["expected_champion"] == "default@2"
    assert event_details(rollback)["evidence"]["pairs"] == 50
    assert result["event_type"] == TRIAL_RESULT


def test_schedule_trigger_with_a_fake_clock() -> None:
    sim = Sim(contract(schedule_s=60.0, cooldown=0))
    champion = stale_model()
    data = sea(3, 4)
    assert sim.events(data, 100, {V1: champion}) == []  # one second of events: not due
    sim.now += 60
    out = sim.events(data, 1, {V1: champion})
    (request,) = of_type(out, RETRAIN_REQUESTED)
    assert event_details(request)["reason"] == "schedule"
    assert request["event_id"] == request_id("demo", "schedule", int(sim.now // 60))
    assert len(candidates(out)) == 1
    assert sim.events(data, 10, {V1: champion}) == []  # not due again for another period


def quality_sim(**options: Any) -> Sim:
    quality = QualityTrigger("accuracy", 0.8, window=50)
    return Sim(contract(quality=quality, train_window=100), **options)


def coin(seed: int) -> Any:
    rng = random.Random(seed)
    return lambda x: rng.random() < 0.5


def test_quality_threshold_trigger_and_cooldown() -> None:
    sim = quality_sim()
    data = sea(3, 5)
    out = sim.events(data, 50, {V1: coin(1)})
    (request,) = of_type(out, RETRAIN_REQUESTED)
    details = event_details(request)
    assert details["reason"] == "quality_threshold"
    assert details["evidence"]["metric"] == "accuracy" and details["evidence"]["value"] < 0.8
    assert details["evidence"]["window"] == 50 and details["evidence"]["offsets"][0]["partition"] == 0
    (candidate,) = candidates(out)
    # The registry registers the candidate and a user archives it at once: no trial holds retraining back.
    sim.registry(REGISTERED, V2, {V1: "champion", V2: "shadow"}, candidate_id=candidate["candidate_id"])
    sim.registry(ARCHIVED_EVENT, V2, {V1: "champion", V2: "archived"})
    assert sim.events(data, 99, {V1: coin(2)}) == []  # the cooldown: 100 labeled examples
    out = sim.events(data, 1, {V1: coin(3)})
    assert [event_details(e)["reason"] for e in of_type(out, RETRAIN_REQUESTED)] == ["quality_threshold"]


def test_quality_trigger_ignores_unserved_examples_and_good_champions() -> None:
    sim = quality_sim()
    data = sea(3, 6)
    assert sim.events(data, 60, {V1: coin(1)}, served=False) == []
    assert sim.events(data, 60, {V1: lambda x: x["x0"] + x["x1"] > 9.5}) == []


def test_a_users_retrain_request_is_acted_on_once() -> None:
    sim = Sim()
    sim.events(sea(3, 7), 100, {V1: stale_model()})
    event = model_event(
        "demo", V1, RETRAIN_REQUESTED, "user:alice", {"reason": "manual"}, event_id="u1", at_ms=int(T0 * 1000)
    )
    out = sim(sim.record(MODEL_EVENTS_TOPIC, event)).outputs
    (candidate,) = candidates(out)
    assert candidate["candidate_id"] == candidate_id("u1", "default") and candidate["reason"] == "manual"
    assert of_type(out, RETRAIN_REQUESTED) == []  # the user's request is on the topic already
    assert sim(sim.record(MODEL_EVENTS_TOPIC, event)).outputs == []


def test_a_request_before_enough_data_waits_for_it() -> None:
    sim = Sim()
    out = sim.alert(kind="quality").outputs
    assert len(of_type(out, RETRAIN_REQUESTED)) == 1 and candidates(out) == []
    assert sim.events(sea(3, 8), 49, {V1: stale_model()}) == []
    out = sim.events(sea(3, 8), 1, {V1: stale_model()})
    assert len(candidates(out)) == 1


def test_bad_records_are_dead_lettered_not_raised() -> None:
    sim = Sim()
    broken = sim.record("demo.labeled", {"event_id": "x", "stream": "demo"})
    unknown = sim.record("demo.events", {"event_id": "y"})
    alert = sim.record("demo.alerts", {"stream": "demo", "kind": "quality"})
    good = sim.labeled(V1, 1, {"x0": 1.0, "x1": 1.0, "x2": 1.0}, False, lambda x: False)
    result = sim(broken, unknown, alert, good)
    assert [d.offset for d in result.dead] == [0, 0, 0] and result.outputs == []
    assert [d.reason for d in result.dead] == ["handler_error"] * 3
    assert len(sim.handler.streams["demo"].windows[V1]) == 1
    assert sim(sim.record("other.labeled", {"event_id": "z"})).dead == []  # not a stream served here


def run_story(sim: Sim) -> list[OutRecord]:
    champion = stale_model()
    data = sea(3, 9)
    out = sim.events(data, 300, {V1: champion})
    out += sim.alert(kind="quality").outputs
    return out


def test_same_input_same_output() -> None:
    first, second = run_story(Sim()), run_story(Sim())
    assert [(o.topic, o.key, o.value) for o in first] == [(o.topic, o.key, o.value) for o in second]
    assert len(first) == 2


def test_a_restart_primed_with_the_history_publishes_nothing_twice() -> None:
    before = run_story(Sim())
    (candidate,) = candidates(before)
    history = [o.value for o in before if o.topic == MODEL_EVENTS_TOPIC]
    history.append(
        model_event(
            "demo",
            V2,
            REGISTERED,
            "model_registry",
            {"roles": {"default@1": "champion", "default@2": "shadow"}, "candidate_id": candidate["candidate_id"]},
            event_id="reg",
        )
    )
    sim = Sim()
    sim.handler.prime(history)
    # The same story read again: the request is known and answered, so nothing is published or trained.
    assert run_story(sim) == []


def test_history_older_than_the_replay_lag_neither_triggers_nor_trains() -> None:
    sim = quality_sim(replay_lag_s=300.0)
    data = sea(3, 10)
    old = int((T0 - 3600) * 1000)
    assert sim.events(data, 60, {V1: coin(1)}, ts_ms=old) == []  # re-read history: quiet
    out = sim.alert(kind="quality", ts_ms=old).outputs  # read back in the replay: it asks (with its old id) ...
    assert len(of_type(out, RETRAIN_REQUESTED)) == 1 and candidates(out) == []
    out = sim.events(data, 1, {V1: coin(2)})  # ... and is trained once the records are live
    assert len(candidates(out)) == 1


def test_an_estimated_quality_alert_about_the_champion_asks_for_a_retrain() -> None:
    sim = Sim()
    (request,) = of_type(sim.alert(kind="estimated_quality").outputs, RETRAIN_REQUESTED)
    details = event_details(request)
    assert details["reason"] == "estimated_quality" and request["model_version"] == 1

"""Label freshness (label time → learned → served) and the learning_lag alert (issue 23, point 3)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from eddy.contracts.monitoring import FreshnessSpec, parse_monitoring
from eddy.contracts.stream import StreamContract
from eddy.ml.models import ModelState
from eddy.services.inference import metrics as inference_metrics
from eddy.services.inference.handlers import fresh_models
from eddy.services.inference.serving import ServingTable
from eddy.services.learning import metrics as learning_metrics
from eddy.services.learning.handlers import Learner, LearnerState
from eddy.services.monitoring.freshness import Freshness, quantile
from eddy.services.monitoring.handlers import Monitor
from prometheus_client import REGISTRY

from tests.keys import TEST_KEYS
from tests.records import demo_contract, label, labeled_example, prediction, record

T0 = 1_700_000_100_000  # ms


def contract_with(max_lag: str | None) -> StreamContract:
    contract = demo_contract()
    freshness = None if max_lag is None else parse_monitoring({"freshness": {"max_lag": max_lag}}, {}).freshness
    return dataclasses.replace(contract, monitoring=dataclasses.replace(contract.monitoring, freshness=freshness))


def labeled(i: int, label_ms: int, joined_ms: int, version: int = 1) -> dict[str, Any]:
    return labeled_example(
        i,
        model_version=version,
        event_time_ms=label_ms - 100,
        predicted_at_ms=label_ms - 90,
        label_time_ms=label_ms,
        joined_at_ms=joined_ms,
    )


def snapshot(newest_label_ms: int, created_at_ms: int, version: int = 1) -> dict[str, Any]:
    return {
        "stream": "demo",
        "model_name": "default",
        "model_version": version,
        "newest_label_ms": newest_label_ms,
        "created_at_ms": created_at_ms,
    }


# -- the contract ------------------------------------------------------------------------------------------


def test_contract_freshness_parses_and_rejects_bad_input() -> None:
    assert parse_monitoring({}, {}).freshness is None, "no key: freshness is measured, no alert"
    assert parse_monitoring({"freshness": {}}, {}).freshness == FreshnessSpec(30_000)
    assert parse_monitoring({"freshness": {"max_lag": "1500ms"}}, {}).freshness == FreshnessSpec(1_500)
    with pytest.raises(ValueError, match="unknown key"):
        parse_monitoring({"freshness": {"max_lag": "1s", "p99": "1s"}}, {})
    with pytest.raises(ValueError, match="not a duration"):
        parse_monitoring({"freshness": {"max_lag": "soon"}}, {})
    with pytest.raises(ValueError, match="must be a mapping"):
        parse_monitoring({"freshness": "30s"}, {})


# -- the pure computation ----------------------------------------------------------------------------------


def test_quantiles_are_nearest_rank() -> None:
    values = [i / 100 for i in range(1, 101)]
    assert quantile(values, 0.5) == 0.5 and quantile(values, 0.99) == 0.99 and quantile(values, 1.0) == 1.0


def test_lag_is_the_age_of_the_served_label_while_a_newer_one_waits() -> None:
    f = Freshness("demo.labeled")
    assert f.lag_s(T0) == 0.0, "nothing learned: nothing waits"
    for i in range(10):
        f.learned(T0 + i * 100, T0 + i * 100 + 20, partition=0, offset=i)
    f.served(T0 + 900, at_ms=T0 + 1_000)
    assert f.lag_s(T0 + 60_000) == 0.0, "every learned label is served: a quiet stream is not lagging"
    f.learned(T0 + 1_100, T0 + 5_000, partition=0, offset=10)
    assert f.lag_s(T0 + 6_000) == 5.1  # the served label (T0 + 900) is 5.1 s old and a newer one waits
    assert f.evidence.records() == [{"partition": 0, "first_offset": 10, "last_offset": 10}]
    f.served(T0 + 1_100, at_ms=T0 + 6_500)
    assert f.lag_s(T0 + 7_000) == 0.0 and f.evidence.records() == []
    f.served(T0 + 500, at_ms=T0 + 9_000)  # an older snapshot read late (a replay): changes nothing
    summary = f.summary(T0 + 7_000, max_lag_s=2.0)
    assert summary["label_to_learned_s"]["n"] == 11 and summary["label_to_learned_s"]["p50"] == 0.02
    assert summary["label_to_learned_s"]["p99"] == 3.9
    assert summary["label_to_served_s"] == {"p50": 0.1, "p99": 5.4, "n": 2}
    assert summary["status"] == "ok" and summary["served_label_ms"] == T0 + 1_100


def test_samples_are_bounded() -> None:
    f = Freshness("demo.labeled", samples=100)
    for i in range(10_000):
        f.learned(T0 + i, T0 + i + 5, partition=0, offset=i)
    assert len(f.to_learned) == 100


# -- the alert in the monitor ------------------------------------------------------------------------------


def test_learning_lag_fires_past_the_contracts_threshold_and_resolves() -> None:
    now = [T0 / 1000]
    monitor = Monitor(contract_with("2s"), clock=lambda: now[0])
    out = monitor([record("demo.labeled", labeled(1, T0, T0 + 10), offset=1)])
    monitor.on_snapshot(snapshot(T0, T0 + 50))
    assert out.outputs == []
    now[0] += 1
    assert monitor([record("demo.labeled", labeled(2, T0 + 1_000, T0 + 1_010), offset=2)]).outputs == []
    now[0] += 2  # the served label is 3 s old and label 2 is learned, not served
    (alert,) = monitor([record("demo.labeled", labeled(3, T0 + 2_000, T0 + 2_010), offset=3)]).outputs
    fired = alert.value
    assert (fired["kind"], fired["subject"], fired["status"]) == ("learning_lag", "default", "firing")
    assert fired["value"] == 3.0 and fired["threshold"] == 2.0 and fired["source_topic"] == "demo.labeled"
    assert fired["offsets"] == [{"partition": 0, "first_offset": 2, "last_offset": 3}]
    assert json.loads(fired["details"])["served_label_ms"] == T0
    assert monitor([record("demo.labeled", labeled(4, T0 + 2_500, T0 + 2_600), offset=4)]).outputs == [], (
        "still firing: one alert, not one per batch"
    )

    monitor.tick(now[0])
    freshness = monitor.document["freshness"]
    assert freshness["status"] == "lagging" and freshness["max_lag_s"] == 2.0 and freshness["lag_s"] == 3.0
    value = REGISTRY.get_sample_value(
        "eddy_freshness_lag_seconds", {"stream": "demo", "model": "default", "version": "1"}
    )
    assert value == 3.0

    monitor.on_snapshot(snapshot(T0 + 2_500, T0 + 3_050))
    (resolved,) = monitor([record("demo.validated", {"event_id": "v"}, offset=9)]).outputs
    assert (resolved.value["status"], resolved.value["alert_id"]) == ("resolved", fired["alert_id"])


def test_without_a_threshold_freshness_shows_but_never_alerts() -> None:
    now = [T0 / 1000 + 100]
    monitor = Monitor(contract_with(None), clock=lambda: now[0])
    monitor.on_snapshot(snapshot(T0, T0 + 50))
    assert monitor([record("demo.labeled", labeled(1, T0 + 10, T0 + 20), offset=1)]).outputs == []
    monitor.tick(now[0])
    freshness = monitor.document["freshness"]
    assert freshness["status"] == "unwatched" and freshness["max_lag_s"] is None and freshness["lag_s"] == 100.0


def test_a_registry_snapshot_without_labels_serves_nothing_new() -> None:
    monitor = Monitor(contract_with("2s"), clock=lambda: T0 / 1000)
    monitor.on_snapshot(snapshot(0, T0))
    assert monitor.freshness == {}


# -- learning and inference ---------------------------------------------------------------------------------


def test_learning_stamps_the_newest_label_into_its_snapshots_and_times_it() -> None:
    contract = demo_contract()
    state = LearnerState(ModelState.fresh("demo", contract.champion))
    now_s = 1_700_000_001.5
    learner = Learner(contract, state, clock=lambda: now_s)
    before = learning_metrics.LABEL_TO_LEARNED.labels("demo", "default")._sum.get()
    learner([record("demo.predictions", prediction(i), offset=i) for i in range(3)])
    learner([record("demo.feedback", label(i), offset=i) for i in range(3)])
    assert state.model.newest_label_ms == label(2)["label_time_ms"]
    spent = learning_metrics.LABEL_TO_LEARNED.labels("demo", "default")._sum.get() - before
    assert spent == pytest.approx(sum(now_s - label(i)["label_time_ms"] / 1000 for i in range(3)))
    assert state.model.to_snapshot_record(TEST_KEYS)["newest_label_ms"] == label(2)["label_time_ms"]


def test_inference_times_label_to_served_at_swap_in() -> None:
    contract = demo_contract()
    t = ServingTable({"demo": contract}, fresh_models({"demo": contract}), TEST_KEYS)
    state = ModelState.fresh("demo", contract.champion)

    def count() -> float:
        return inference_metrics.LABEL_TO_SERVED.labels("demo", "default")._sum.get()

    before = count()
    state.learned_count, state.newest_label_ms = 5, 1_000
    assert t.load(state.to_snapshot_record(TEST_KEYS))
    state.learned_count, state.newest_label_ms = 9, 2_000
    assert t.load(state.to_snapshot_record(TEST_KEYS))
    assert count() > before, "a snapshot replacing a served one is timed"
    assert REGISTRY.get_sample_value(
        "eddy_served_newest_label_timestamp_seconds", {"stream": "demo", "model": "default"}
    ) == pytest.approx(2.0)


def test_labels_produced_past_the_served_snapshots_reading_are_waiting() -> None:
    """A learner that is behind (or stopped) emits nothing new: the labels it has not read still make a lag."""
    now = [T0 / 1000 + 10]
    monitor = Monitor(contract_with("2s"), clock=lambda: now[0])
    monitor.on_feedback_ends({"demo.feedback:0": 500, "demo.feedback:1": 480})
    monitor([record("demo.labeled", labeled(1, T0, T0 + 10), offset=1)])
    served = snapshot(T0, T0 + 50) | {"source_offsets": {"demo.feedback:0": 500, "demo.feedback:1": 479}}
    monitor.on_snapshot(served | {"source_offsets": {**served["source_offsets"], "demo.predictions:0": 9}})
    assert monitor.freshness[monitor.roles.champion].lag_s(int(now[0] * 1000)) == 0.0, (
        "one offset short is a transaction's commit marker, not a label"
    )
    monitor.on_feedback_ends({"demo.feedback:0": 700, "demo.feedback:1": 480})
    (alert,) = monitor([record("demo.validated", {"event_id": "v"}, offset=1)]).outputs
    assert alert.value["kind"] == "learning_lag" and alert.value["value"] == 10.0


def test_the_freshness_entry_matches_the_documented_dashboard_schema() -> None:
    from tests.unit.services.test_openapi_documents import APPS, schema_validator, served_document

    now = [T0 / 1000 + 10]
    monitor = Monitor(contract_with("2s"), clock=lambda: now[0])
    monitor.on_snapshot(snapshot(T0, T0 + 50))
    monitor([record("demo.labeled", labeled(1, T0 + 10, T0 + 20), offset=1)])
    monitor.tick(now[0])
    document = json.loads(json.dumps(monitor.document))
    assert document["freshness"]["status"] == "lagging"
    _, doc = served_document(APPS["monitoring dashboard"]())
    schema_validator(doc, "Dashboard").validate(document)
    broken = document | {"freshness": {**document["freshness"], "status": "late"}}
    with pytest.raises(Exception, match="late"):
        schema_validator(doc, "Dashboard").validate(broken)


# -- the lag closes once everything produced is served (the half-speed soak's bug) -------------------------------


def test_a_snapshot_that_reads_further_without_a_newer_label_closes_the_lag() -> None:
    """Labels sent together share one label time: the snapshot that learns the rest of them, on another
    partition, carries no newer label than the one served, yet it is the one that has read them."""
    now = [T0 / 1000 + 60]
    monitor = Monitor(contract_with("2s"), clock=lambda: now[0])
    monitor.on_feedback_ends({"demo.feedback:0": 101, "demo.feedback:1": 101})
    first = snapshot(T0, T0 + 50) | {
        "learned_count": 140,
        "source_offsets": {"demo.feedback:0": 100, "demo.feedback:1": 40},
    }
    monitor.on_snapshot(first)
    fresh = monitor.freshness[monitor.roles.champion]
    assert fresh.lag_s(int(now[0] * 1000)) == 60.0, "60 labels of partition 1 not read by the served snapshot"
    monitor.on_snapshot(
        first | {"learned_count": 200, "source_offsets": {"demo.feedback:0": 100, "demo.feedback:1": 100}}
    )
    assert fresh.lag_s(int(now[0] * 1000)) == 0.0
    assert fresh.summary(int(now[0] * 1000), 2.0)["label_to_served_s"]["n"] == 1, "one label time served, timed once"


def test_a_snapshot_that_learned_less_than_the_served_one_does_not_replace_its_reading() -> None:
    """Inference keeps the model that learned more (a restarted learner's first snapshots are older)."""
    f = Freshness("demo.labeled")
    f.input_end({"demo.feedback:0": 101})
    f.served(newest_label_ms=T0, at_ms=T0 + 10, read={"demo.feedback:0": 100}, learned_count=100)
    f.served(newest_label_ms=T0 - 500, at_ms=T0 + 20, read={"demo.feedback:0": 60}, learned_count=60)
    assert f.lag_s(T0 + 5_000) == 0.0 and f.served_ms == T0
    f.served(newest_label_ms=T0, at_ms=T0 + 30, read={"demo.feedback:0": 80}, learned_count=100)
    assert f.served_read == {"demo.feedback:0": 100}, "the same model, re-published: what either read"


class CapturingProducer:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def produce(self, topic: str, value: bytes, key: bytes) -> None:
        pass

    def confirm(self) -> None:
        pass


def learning_service(contract: StreamContract, producer: CapturingProducer) -> Any:
    """A LearningService learning ``contract``'s champion from scratch, publishing into ``producer.records``."""
    from types import SimpleNamespace

    from eddy.ml.roles import contract_roles
    from eddy.runtime.observability import Health
    from eddy.services.learning.config import JoinLimits
    from eddy.services.learning.runner import LearningService

    def encode(value: dict[str, Any]) -> bytes:
        producer.records.append(value)
        return b"snapshot"

    serde = SimpleNamespace(encode=encode)
    runner = object.__new__(LearningService)
    runner.ctx = SimpleNamespace(
        serdes=SimpleNamespace(for_topic=lambda topic: serde),
        keys=TEST_KEYS,
        producer=producer,
        health=Health("learning"),
        contracts={"demo": contract},
        settings=SimpleNamespace(checkpoint_interval_s=float("inf"), snapshot_interval_s=0.0),
    )
    runner.code_version, runner._published, runner.feed, runner.limits = "test", {}, None, JoinLimits()
    runner.roles, runner.learners = {"demo": contract_roles(contract)}, {}
    runner._dirty, runner._last_checkpoint, runner._last_snapshot = False, 0.0, 0.0
    runner._add("demo", LearnerState(ModelState.fresh("demo", contract.champion)))
    return runner


def test_labels_that_teach_nothing_at_the_tail_of_feedback_still_close_the_lag() -> None:
    """Duplicates (dead-lettered, learned by nobody) end S.feedback: learning publishes what it has read anyway."""
    contract = contract_with("2s")
    producer = CapturingProducer()
    runner = learning_service(contract, producer)
    loop = type("Loop", (), {"commit": lambda self, offsets: None})()

    def feed(topic: str, values: list[dict[str, Any]], first: int) -> None:
        runner.handle([record(topic, v, offset=first + i) for i, v in enumerate(values)])
        runner.on_batch_done({(topic, 0): first + len(values)}, loop)

    feed("demo.predictions", [prediction(i) for i in range(3)], 0)
    feed("demo.feedback", [label(i) for i in range(3)], 0)
    feed("demo.feedback", [label(i) for i in range(3)], 3)  # the same three labels again: dead-lettered
    now = [T0 / 1000 + 30]
    monitor = Monitor(contract, clock=lambda: now[0])
    monitor.on_feedback_ends({"demo.feedback:0": 6})
    for published in producer.records:
        monitor.on_snapshot(published)
    assert producer.records[-1]["source_offsets"]["demo.feedback:0"] == 6
    assert monitor.freshness[monitor.roles.champion].lag_s(int(now[0] * 1000)) == 0.0
    published = len(producer.records)
    runner.publish()
    assert len(producer.records) == published, "nothing read nor learned since: not published again"


def test_the_shards_of_a_sharded_model_each_serve_their_reading() -> None:
    """Shard 1 has learned less than shard 0: its snapshots still count, and its partition waits until it reads it."""
    f = Freshness("demo.labeled")
    f.input_end({"demo.feedback:0": 101, "demo.feedback:1": 101})
    f.served(T0, T0 + 10, read={"demo.feedback:0": 100, "demo.feedback:1": 100}, learned_count=900, shard=0)
    f.served(T0 - 50, T0 + 20, read={"demo.feedback:0": 100, "demo.feedback:1": 60}, learned_count=300, shard=1)
    assert f.lag_s(T0 + 4_000) == 4.0, "shard 1 has not learned partition 1's last 40 labels"
    f.served(T0 - 20, T0 + 30, read={"demo.feedback:0": 100, "demo.feedback:1": 100}, learned_count=340, shard=1)
    assert f.lag_s(T0 + 4_000) == 0.0

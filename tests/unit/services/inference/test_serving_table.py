"""The serving table: which version answers, from snapshots and the registry's alias tables (no Kafka)."""

from eddy.ml.models import ModelState
from eddy.ml.roles import ARCHIVED, CHALLENGER, CHAMPION, SHADOW, VersionKey
from eddy.services.inference.handlers import fresh_models
from eddy.services.inference.serving import ServingTable

from tests.keys import TEST_KEYS
from tests.records import demo_contract, registry_fact

V1, V2 = VersionKey("default", 1), VersionKey("default", 2)


def aliases(table: dict[VersionKey, str], canary: float = 0.0) -> dict:
    return registry_fact("demo", V1, "promoted", table, canary)


def snapshot(version: int, learned: int) -> dict:
    state = ModelState.fresh("demo", demo_contract().champion, version=version)
    state.learned_count = learned
    return state.to_snapshot_record(TEST_KEYS)


def table() -> ServingTable:
    contract = demo_contract()
    return ServingTable({"demo": contract}, fresh_models({"demo": contract}), TEST_KEYS)


def test_a_promotion_waits_for_the_champions_model_then_switches() -> None:
    t = table()
    assert t.apply_event(aliases({V1: SHADOW, V2: CHAMPION}))
    t.serve("demo")
    assert t.models["demo"].champion.key == V1, "no model for v2 yet: v1 keeps answering"
    assert t.load(snapshot(2, 10))
    assert t.serve("demo")
    serving = t.models["demo"]
    assert serving.champion.key == V2 and [m.key for m in serving.shadows] == [V1]


def test_challenger_canary_and_archive() -> None:
    t = table()
    t.load(snapshot(2, 10))
    t.apply_event(aliases({V1: CHAMPION, V2: CHALLENGER}, canary=0.2))
    t.serve("demo")
    serving = t.models["demo"]
    assert serving.challenger is not None and serving.challenger.key == V2 and serving.canary == 0.2
    t.apply_event(aliases({V1: CHAMPION, V2: ARCHIVED}))
    t.serve("demo")
    assert t.models["demo"].models == (t.models["demo"].champion,)
    assert V2 not in t.loaded["demo"]
    assert not t.load(snapshot(2, 20)), "an archived version is not loaded again"


def test_only_newer_snapshots_replace_and_only_registry_facts_count() -> None:
    t = table()
    assert t.load(snapshot(1, 5))
    assert not t.load(snapshot(1, 5))
    assert not t.apply_event({**aliases({V1: SHADOW, V2: CHAMPION}), "actor": "retraining"})
    assert not t.apply_event({**aliases({V1: SHADOW, V2: CHAMPION}), "event_type": "promotion_requested"})

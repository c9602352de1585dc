"""The model registry's store and decisions, without Kafka: invariants, outbox, idempotence, restarts, artifacts."""

from __future__ import annotations

import hashlib
import json
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from eddy.contracts.stream import StreamContract
from eddy.core.topics import MODEL_CANDIDATES_TOPIC, MODEL_EVENTS_TOPIC
from eddy.ml.models import build_estimator
from eddy.ml.roles import (
    ARCHIVED,
    CHALLENGER,
    CHAMPION,
    PROMOTED,
    PROMOTION_REQUESTED,
    REGISTERED,
    REQUEST_REFUSED,
    ROLLBACK_REQUESTED,
    ROLLED_BACK,
    SHADOW,
    SYNCED,
    VersionKey,
    default_roles,
    event_details,
    model_event,
    roles_of_event,
)
from eddy.services.model_registry.artifacts import ArtifactError, ArtifactStore
from eddy.services.model_registry.handlers import CandidateError, Lineage, Refused, Registry, RegistryHandler
from eddy.services.model_registry.store import InvariantError, Store

from tests.keys import TEST_KEYS
from tests.records import demo_contract, record

V1, V2, V3 = VersionKey("default", 1), VersionKey("default", 2), VersionKey("default", 3)


def candidate(contract: StreamContract, n: int, alias: str = CHALLENGER, **overrides: Any) -> dict[str, Any]:
    """A ModelCandidate record of the demo contract's champion spec."""
    spec = contract.champion
    artifact = pickle.dumps(build_estimator(spec))
    base = {
        "candidate_id": f"cand-{n}",
        "stream": contract.name,
        "model_name": spec.name,
        "parent_version": 1,
        "spec": spec.to_json(),
        "artifact": artifact,
        "sha256": hashlib.sha256(artifact).hexdigest(),
        "learned_count": 300 + n,
        "training_offsets": [{"topic": "demo.labeled", "partition": 0, "first_offset": 10, "last_offset": 309}],
        "schema_ids": {"demo.labeled": 7},
        "metrics": json.dumps({"holdout": {"accuracy": 0.9, "champion_accuracy": 0.8}}),
        "alias": alias,
        "code_version": "abc123",
        "created_by": "retraining",
        "created_at_ms": 1_700_000_000_000 + n,
        "reason": "concept_drift",
    }
    record = {**base, **overrides}
    # Signed as retraining signs it, unless a test gives its own signature.
    record.setdefault("signature", TEST_KEYS.sign(record["artifact"]))
    return record


def open_registry(tmp_path: Path, contract: StreamContract | None = None) -> Registry:
    contract = contract or demo_contract()
    store = Store(tmp_path / "registry" / "registry.db")
    artifacts = ArtifactStore(tmp_path / "registry" / "artifacts", TEST_KEYS)
    registry = Registry(store, artifacts, {contract.name: contract}, "test")
    registry.ensure_initial()
    return registry


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    return open_registry(tmp_path)


def outbox(registry: Registry) -> list[dict[str, Any]]:
    return [event for _, event in registry.store.unpublished()]


def request(kind: str, key: VersionKey, event_id: str, **details: Any) -> dict[str, Any]:
    return model_event("demo", key, kind, "retraining", details, event_id=event_id)


def test_initial_versions_agree_with_default_roles(registry: Registry) -> None:
    roles = registry.roles("demo")
    assert roles.aliases == default_roles("demo", ["default"]).aliases
    (event,) = outbox(registry)
    assert event["event_type"] == REGISTERED and event["alias"] == CHAMPION and event["actor"] == "model_registry"
    assert roles_of_event(event) == roles
    row = registry.row("demo", V1)
    assert registry.artifacts.verify(row.sha256) and row.reason == "contract"
    registry.ensure_initial()  # idempotent: nothing more to register
    assert len(registry.store.versions("demo")) == 1


def test_a_second_contract_model_starts_as_shadow(tmp_path: Path) -> None:
    base = demo_contract()
    other = type(base.champion)("tree", base.champion.pipeline, base.champion.features)
    contract = StreamContract(**{**base.__dict__, "models": (base.champion, other)})
    registry = open_registry(tmp_path, contract)
    assert registry.roles("demo").aliases == default_roles("demo", ["default", "tree"]).aliases


def test_candidate_registers_the_next_version_with_lineage(registry: Registry) -> None:
    registered = registry.register_candidate(candidate(registry.contract("demo"), 1))
    assert registered is not None
    row = registered.row
    assert row.key == V2 and row.parent == "default@1" and row.learned_count == 301
    assert row.training_offsets[0]["last_offset"] == 309 and row.schema_ids == {"demo.labeled": 7}
    assert row.metrics["holdout"]["accuracy"] == 0.9 and row.code_version == "abc123"
    event = registered.event
    details = event_details(event)
    assert event["event_type"] == REGISTERED and event["alias"] == CHALLENGER
    assert details["roles"] == {"default@1": CHAMPION, "default@2": CHALLENGER}
    assert {"candidate_id", "parent", "reason", "metrics", "canary"} <= details.keys()
    snapshot = registry.snapshot_record(row)
    assert snapshot["source_offsets"] == {} and snapshot["learned_count"] == 301 and snapshot["model_version"] == 2
    assert hashlib.sha256(snapshot["artifact"]).hexdigest() == snapshot["sha256"] == row.sha256


def test_a_new_challenger_demotes_the_old_one_to_shadow(registry: Registry) -> None:
    contract = registry.contract("demo")
    registry.register_candidate(candidate(contract, 1))
    registered = registry.register_candidate(candidate(contract, 2))
    assert registered is not None
    assert registry.roles("demo").aliases == {V1: CHAMPION, V2: SHADOW, V3: CHALLENGER}
    assert event_details(registered.event)["demoted"] == "default@2"


def test_a_candidate_id_is_registered_once(registry: Registry) -> None:
    c = candidate(registry.contract("demo"), 1)
    assert registry.register_candidate(c) is not None
    assert registry.register_candidate(c) is None
    assert len(registry.store.versions("demo")) == 2


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sha256": "0" * 64}, "checksum_mismatch"),
        ({"stream": "nope"}, "unknown_stream"),
        ({"model_name": "nope"}, "unknown_model"),
        ({"alias": CHAMPION}, "bad_alias"),
        ({"spec": "{}"}, "bad_spec"),
        ({"artifact": b"not a pickle", "sha256": hashlib.sha256(b"not a pickle").hexdigest()}, "unpicklable"),
        ({"signature": ""}, "unsigned"),
        ({"signature": "v1:test-key:" + "0" * 64}, "bad_signature"),
        ({"signature": "v1:someone-else:" + "0" * 64}, "unknown_key"),
        ({"signature": "sha256:abc"}, "malformed"),
    ],
)
def test_bad_candidates_are_refused_with_a_reason(registry: Registry, overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(CandidateError) as info:
        registry.register_candidate(candidate(registry.contract("demo"), 1, **overrides))
    assert info.value.reason == reason
    assert len(registry.store.versions("demo")) == 1


def test_the_loop_handler_dead_letters_bad_candidates_and_outputs_snapshots(registry: Registry) -> None:
    contract = registry.contract("demo")
    good = record(MODEL_CANDIDATES_TOPIC, candidate(contract, 1), offset=0)
    bad = record(MODEL_CANDIDATES_TOPIC, candidate(contract, 2, sha256="f" * 64), offset=1)
    result = RegistryHandler(registry)([good, bad, good])
    (out,) = result.outputs
    assert out.topic == "demo.models" and out.key == "default@2/registered" and out.value["model_version"] == 2
    (dead,) = result.dead
    assert dead.reason == "checksum_mismatch" and dead.offset == 1 and dead.dlq_topic == "eddy.dlq"
    promote = request(PROMOTION_REQUESTED, V2, "req-1", expected_champion="default@1")
    result = RegistryHandler(registry)([record(MODEL_EVENTS_TOPIC, promote), record(MODEL_EVENTS_TOPIC, promote)])
    assert result.outputs == [] and result.dead == [] and registry.roles("demo").champion == V2
    assert [e["event_type"] for e in outbox(registry)][-1] == PROMOTED  # published by the outbox, not the loop


def test_promotion_moves_the_champion_and_keeps_the_old_one_as_shadow(registry: Registry) -> None:
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    event = registry.promote("demo", V2, "user:ann", "better", {"n": 300})
    assert registry.roles("demo").aliases == {V1: SHADOW, V2: CHAMPION}
    details = event_details(event)
    assert event["event_type"] == PROMOTED and event["alias"] == CHAMPION
    assert details["previous"] == "default@1" and details["reason"] == "better" and details["evidence"] == {"n": 300}
    assert details["probation_labels"] == registry.contract("demo").retraining.promotion.rollback_labels
    assert registry.store.check() == {"demo": 1}
    with pytest.raises(Refused) as info:
        registry.promote("demo", V2, "user:ann")
    assert info.value.status == 409


def test_rollback_archives_the_champion_and_restores_the_previous_one(registry: Registry) -> None:
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    registry.promote("demo", V2, "user:ann")
    assert registry.previous_champion("demo") == V1
    event = registry.rollback("demo", "user:ann", reason="worse")
    assert event["event_type"] == ROLLED_BACK and event_details(event)["from"] == "default@2"
    assert registry.roles("demo").aliases == {V1: CHAMPION, V2: ARCHIVED}
    with pytest.raises(Refused):
        registry.rollback("demo", "user:ann")  # the only earlier champion is the one a rollback removed
    with pytest.raises(Refused):
        registry.promote("demo", V2, "user:ann")  # archived
    assert registry.take_revived() == []  # V1 was never archived: everyone still holds it


def test_rollback_revives_a_champion_its_successors_probation_archived(registry: Registry) -> None:
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    registry.promote("demo", V2, "retraining")
    registry.archive("demo", V1, "retraining", reason="probation passed")
    assert registry.previous_champion("demo") == V1
    registry.rollback("demo", "user:ann", reason="changed my mind")
    assert registry.roles("demo").aliases == {V1: CHAMPION, V2: ARCHIVED}
    # Its registered artifact goes out first, for processes that kept nothing of the archived version.
    (snapshot,) = registry.take_revived()
    assert (snapshot["model_version"], snapshot["source_offsets"]) == (1, {})
    assert registry.take_revived() == []
    # Through the loop (a retraining or CLI request), the snapshot is an output before the outbox's event.
    registry.rollback("demo", "user:ann", to=V2)  # named explicitly, even one a rollback removed
    assert [s["model_version"] for s in registry.take_revived()] == [2]
    rollback = request(ROLLBACK_REQUESTED, V2, "req-9", expected_champion="default@2", to="default@1")
    result = RegistryHandler(registry)([record(MODEL_EVENTS_TOPIC, rollback)])
    assert [(o.topic, o.value["model_version"]) for o in result.outputs] == [("demo.models", 1)]


def test_archive_never_touches_the_champion(registry: Registry) -> None:
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    with pytest.raises(Refused) as info:
        registry.archive("demo", V1, "user:ann")
    assert info.value.status == 409
    registry.archive("demo", V2, "user:ann")
    assert registry.roles("demo").aliases == {V1: CHAMPION, V2: ARCHIVED}
    with pytest.raises(Refused):
        registry.archive("demo", VersionKey("default", 9), "user:ann")


def test_sql_allows_one_champion_per_stream(registry: Registry) -> None:
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    db = sqlite3.connect(registry.store.path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE aliases SET alias = 'champion' WHERE version = 2")
    db.close()
    with pytest.raises(InvariantError), registry.store.transaction():
        registry.store.set_alias("demo", V1, SHADOW)  # leaves no champion: rolled back
    assert registry.roles("demo").champion == V1


def test_requests_are_applied_once_and_stale_ones_refused(registry: Registry) -> None:
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    promote = request(PROMOTION_REQUESTED, V2, "req-1", expected_champion="default@1", reason="better")
    event = registry.handle_request(promote)
    assert event is not None and event["event_type"] == PROMOTED and event_details(event)["request"] == "req-1"
    assert registry.handle_request(promote) is None  # read again: ignored
    stale = request(PROMOTION_REQUESTED, V1, "req-2", expected_champion="default@1")
    refused = registry.handle_request(stale)
    assert refused is not None and refused["event_type"] == REQUEST_REFUSED and refused["actor"] == "model_registry"
    assert event_details(refused)["request"] == "req-2" and "default@2" in event_details(refused)["reason"]
    rollback = request(ROLLBACK_REQUESTED, V2, "req-3", expected_champion="default@2", to="default@1")
    assert registry.handle_request(rollback)["event_type"] == ROLLED_BACK  # type: ignore[index]
    assert registry.roles("demo").aliases == {V1: CHAMPION, V2: ARCHIVED}
    assert registry.store.handled(
        "req-2",
    ).startswith("refused")  # type: ignore[union-attr]
    own = {**promote, "event_id": "x", "actor": "model_registry"}
    assert registry.handle_request(own) is None
    assert registry.handle_request({**promote, "event_id": "y", "event_type": PROMOTED}) is None


def test_outbox_event_ids_are_deterministic_and_published_once(registry: Registry) -> None:
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    rows = registry.store.unpublished()
    assert [e["event_id"] for _, e in rows] == [registry.store.event_id(seq) for seq, _ in rows]
    assert len({e["event_id"] for _, e in rows}) == len(rows) == 2
    registry.store.mark_published([rows[0][0]])
    assert registry.store.unpublished() == rows[1:]


def test_sync_carries_the_table_and_skips_the_audit(registry: Registry) -> None:
    event = registry.sync("demo")
    assert event["event_type"] == SYNCED and roles_of_event(event) == registry.roles("demo")
    assert all(a["event_type"] != SYNCED for a in registry.store.audit("demo"))


def test_reopening_the_database_gives_the_same_state(tmp_path: Path) -> None:
    registry = open_registry(tmp_path)
    registry.register_candidate(candidate(registry.contract("demo"), 1))
    registry.promote("demo", V2, "user:ann")
    before = (registry.roles("demo"), registry.store.unpublished(), registry.store.audit("demo"))
    registry.store.close()
    again = open_registry(tmp_path)
    assert (again.roles("demo"), again.store.unpublished(), again.store.audit("demo")) == before
    assert again.store.event_id(1) == registry.store.event_id(1)
    assert again.register_candidate(candidate(again.contract("demo"), 1)) is None
    assert [a["event_type"] for a in again.store.audit("demo", key=V1)] == [PROMOTED, REGISTERED]


def test_artifact_checksum_mismatch_is_detected(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts", TEST_KEYS)
    sha, size = store.put(b"model bytes")
    assert store.get(sha) == b"model bytes" and size == 11 and store.path(sha).parent.name == sha[:2]
    signed = store.path(sha).read_bytes()
    store.path(sha).write_bytes(signed.replace(b"model bytes", b"model bytez"))
    with pytest.raises(ArtifactError, match="does not match the content"):
        store.get(sha)
    assert not store.verify(sha)
    # Re-signed with a key eddy does not hold, the content's own checksum is then checked.
    store.path(sha).write_bytes(b"EDDY-SIGNED " + TEST_KEYS.sign(b"model bytez").encode() + b"\nmodel bytez")
    with pytest.raises(ArtifactError, match="corrupt"):
        store.get(sha)
    with pytest.raises(ArtifactError, match="missing"):
        store.get("a" * 64)


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts", TEST_KEYS)
    sha, _ = store.put(b"x")
    (store.path(sha).parent / ".tmp-abc").write_bytes(b"half")
    assert store.clean() == 1 and store.clean() == 0 and store.get(sha) == b"x"


def test_lineage_records_online_ranges_throttled(registry: Registry) -> None:
    now = [100.0]
    lineage = Lineage(registry.store, interval_s=1.0, clock=lambda: now[0])

    def snap(next_offset: int, learned: int, start: dict[str, int] | None = None) -> dict[str, Any]:
        return {
            "stream": "demo",
            "model_name": "default",
            "model_version": 1,
            "learned_count": learned,
            "source_offsets": {"demo.predictions:0": next_offset},
            "learned_from_offsets": start or {},
        }

    assert not lineage.observe({**snap(5, 5), "source_offsets": {}})  # the registry's own
    assert not lineage.observe({**snap(5, 5), "model_version": 9})  # not registered
    assert lineage.observe(snap(10, 10))
    assert lineage.flush() == 1
    lineage.observe(snap(20, 20))
    assert lineage.flush() == 0  # throttled
    now[0] += 1.5
    assert lineage.flush() == 1
    row = registry.row("demo", V1)
    assert row.online_ranges == {"demo.predictions:0": {"from": 0, "through": 19}} and row.online_learned_count == 20
    lineage.observe(snap(30, 30, start={"demo.predictions:0": 3}))
    lineage.flush(force=True)
    assert registry.row("demo", V1).online_ranges["demo.predictions:0"] == {"from": 3, "through": 29}


def test_lineage_of_a_version_in_shards_counts_every_shards_labels(registry: Registry) -> None:
    lineage = Lineage(registry.store, interval_s=0.0)
    base = registry.row("demo", V1).learned_count

    def snap(shard: int, partition: int, learned: int) -> dict[str, Any]:
        return {"stream": "demo", "model_name": "default", "model_version": 1, "shard": shard,
                "learned_count": base + learned, "source_offsets": {f"demo.feedback:{partition}": learned}}  # fmt: skip

    assert lineage.observe(snap(0, 0, 10)) and lineage.observe(snap(1, 1, 7)) and lineage.observe(snap(0, 0, 12))
    lineage.flush(force=True)
    row = registry.row("demo", V1)
    assert row.online_learned_count == base + 19
    assert row.online_ranges == {
        "demo.feedback:0": {"from": 0, "through": 11},
        "demo.feedback:1": {"from": 0, "through": 6},
    }

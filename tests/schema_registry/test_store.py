"""Unit tests of the in-memory store (no I/O)."""

from __future__ import annotations

import json

import pytest
from eddy.services.schema_registry.compatibility import Level
from eddy.services.schema_registry.errors import RegistryError
from eddy.services.schema_registry.store import ParsedSchema, Store, parse_candidate, replay
from eddy.services.schema_registry.versions import LATEST

pytestmark = pytest.mark.timeout(30)


def schema(*fields: str, name: str = "R") -> ParsedSchema:
    body = {"type": "record", "name": name, "fields": [{"name": f, "type": "int", "default": 0} for f in fields]}
    return parse_candidate({"schema": json.dumps(body)})


def register(store: Store, subject: str, candidate: ParsedSchema) -> tuple[int, int]:
    result = store.execute(store.plan_register(subject, candidate))
    return result.schema_id, result.version


def code(exc: pytest.ExceptionInfo[RegistryError]) -> int:
    return exc.value.error_code


def test_ids_are_global_and_versions_per_subject() -> None:
    store = Store()
    assert register(store, "a", schema("x")) == (1, 1)
    assert register(store, "a", schema("x", "y")) == (2, 2)
    assert register(store, "b", schema("x", "y")) == (2, 1)
    assert register(store, "a", schema("x")) == (1, 1), "same schema again returns the existing version"


def test_register_dedup_uses_canonical_form() -> None:
    store = Store()
    first = parse_candidate({"schema": '{"type":"record","name":"R","fields":[{"name":"x","type":"int"}]}'})
    spaced = parse_candidate(
        {"schema": '{ "fields" : [ { "type" : {"type": "int"}, "name" : "x" } ], "name" : "R", "type" : "record" }'}
    )
    assert register(store, "s", first) == register(store, "s", spaced)
    assert store.versions("s") == [1]


def test_plan_does_not_mutate_until_executed() -> None:
    store = Store()
    outcome = store.plan_register("s", schema("x"))
    assert store.subjects() == []
    store.execute(outcome)
    assert store.subjects() == ["s"]


def test_incompatible_schema_is_rejected() -> None:
    store = Store()
    register(store, "s", parse_candidate({"schema": '{"type":"record","name":"R","fields":[]}'}))
    with pytest.raises(RegistryError) as exc:
        store.plan_register(
            "s", parse_candidate({"schema": '{"type":"record","name":"R","fields":[{"name":"x","type":"int"}]}'})
        )
    assert exc.value.status == 409 and code(exc) == 409


def test_soft_delete_then_permanent_delete_rules() -> None:
    store = Store()
    register(store, "s", schema("x"))
    register(store, "s", schema("x", "y"))
    with pytest.raises(RegistryError) as exc:
        store.plan_delete_subject("s", permanent=True)
    assert code(exc) == 40405
    assert store.execute(store.plan_delete_subject("s", permanent=False)) == [1, 2]
    assert store.subjects() == [] and store.subjects(include_deleted=True) == ["s"]
    with pytest.raises(RegistryError) as exc:
        store.plan_delete_subject("s", permanent=False)
    assert code(exc) == 40404
    with pytest.raises(RegistryError) as exc:
        store.versions("s")
    assert code(exc) == 40401
    assert store.versions("s", include_deleted=True) == [1, 2]
    assert store.schema_by_id(1), "soft-deleted schemas stay readable by id"
    assert store.execute(store.plan_delete_subject("s", permanent=True)) == [1, 2]
    assert store.subjects(include_deleted=True) == []
    with pytest.raises(RegistryError) as exc:
        store.schema_by_id(1)
    assert code(exc) == 40403


def test_version_delete_rules() -> None:
    store = Store()
    register(store, "s", schema("x"))
    register(store, "s", schema("x", "y"))
    with pytest.raises(RegistryError) as exc:
        store.plan_delete_version("s", 1, permanent=True)
    assert code(exc) == 40407
    assert store.execute(store.plan_delete_version("s", 1, permanent=False)) == 1
    with pytest.raises(RegistryError) as exc:
        store.plan_delete_version("s", 1, permanent=False)
    assert code(exc) == 40406
    with pytest.raises(RegistryError) as exc:
        store.plan_delete_version("s", 9, permanent=False)
    assert code(exc) == 40402
    assert store.execute(store.plan_delete_version("s", LATEST, permanent=False)) == 2
    assert store.execute(store.plan_delete_version("s", 1, permanent=True)) == 1
    assert store.versions("s", include_deleted=True) == [2]


def test_ids_never_reused_after_permanent_delete() -> None:
    store = Store()
    register(store, "s", schema("x"))
    store.execute(store.plan_delete_subject("s", permanent=False))
    store.execute(store.plan_delete_subject("s", permanent=True))
    schema_id, _ = register(store, "t", schema("x", "y"))
    assert schema_id == 2


def test_reregistering_soft_deleted_schema_gets_new_version_same_id() -> None:
    store = Store()
    register(store, "s", schema("x"))
    store.execute(store.plan_delete_version("s", 1, permanent=False))
    assert register(store, "s", schema("x")) == (1, 2)
    assert store.versions("s", include_deleted=True) == [2]


def test_config_fallback_and_delete() -> None:
    store = Store()
    assert store.level(None) is Level.BACKWARD
    assert store.level("s") is Level.BACKWARD
    with pytest.raises(RegistryError) as exc:
        store.level("s", default_to_global=False)
    assert code(exc) == 40408
    store.execute(store.plan_set_level(None, Level.FULL))
    assert store.level("s") is Level.FULL
    store.execute(store.plan_set_level("s", Level.NONE))
    assert store.level("s", default_to_global=False) is Level.NONE
    assert store.execute(store.plan_delete_level("s")) is Level.NONE
    assert store.level("s") is Level.FULL
    with pytest.raises(RegistryError) as exc:
        store.plan_delete_level("s")
    assert code(exc) == 40401
    assert store.execute(store.plan_delete_level(None)) is Level.FULL
    assert store.level(None) is Level.BACKWARD


def test_subject_level_governs_registration() -> None:
    store = Store()
    register(store, "s", parse_candidate({"schema": '"int"'}))
    store.execute(store.plan_set_level("s", Level.NONE))
    assert register(store, "s", parse_candidate({"schema": '"string"'})) == (2, 2)


def test_permanent_subject_delete_drops_its_config() -> None:
    store = Store()
    register(store, "s", schema("x"))
    store.execute(store.plan_set_level("s", Level.FULL))
    store.execute(store.plan_delete_subject("s", permanent=False))
    store.execute(store.plan_delete_subject("s", permanent=True))
    with pytest.raises(RegistryError):
        store.level("s", default_to_global=False)


def test_lookup_and_get_version() -> None:
    store = Store()
    register(store, "s", schema("x"))
    register(store, "s", schema("x", "y"))
    view = store.lookup("s", schema("x"))
    assert (view.version, view.schema_id) == (1, 1)
    assert store.get_version("s", LATEST).version == 2
    with pytest.raises(RegistryError) as exc:
        store.lookup("s", schema("z"))
    assert code(exc) == 40403
    with pytest.raises(RegistryError) as exc:
        store.lookup("nope", schema("x"))
    assert code(exc) == 40401
    with pytest.raises(RegistryError) as exc:
        store.get_version("s", 7)
    assert code(exc) == 40402


def test_replay_rebuilds_identical_state() -> None:
    store = Store()
    ops: list[dict[str, object]] = []
    for outcome in (
        store.plan_register("a", schema("x")),
        store.plan_register("b", schema("x")),
    ):
        ops += outcome.ops
        store.execute(outcome)
    outcome2 = store.plan_set_level("a", Level.FULL_TRANSITIVE)
    ops += outcome2.ops
    store.execute(outcome2)
    copy = Store()
    replay(copy, ops)
    assert copy.subjects() == store.subjects()
    assert copy.subject_versions_for_id(1) == [("a", 1), ("b", 1)]
    assert copy.level("a") is Level.FULL_TRANSITIVE


@pytest.mark.parametrize(
    ("body", "error_code"),
    [
        ({"schema": '"int"', "schemaType": "PROTOBUF"}, 42201),
        ({"schema": '"int"', "references": [{"name": "x", "subject": "y", "version": 1}]}, 42201),
        ({"schema": ""}, 42201),
        ({}, 42201),
        (["not", "an", "object"], 400),
    ],
)
def test_parse_candidate_rejections(body: object, error_code: int) -> None:
    with pytest.raises(RegistryError) as exc:
        parse_candidate(body)
    assert code(exc) == error_code


def test_parse_candidate_accepts_null_metadata_and_empty_references() -> None:
    parsed = parse_candidate(
        {"schema": '"int"', "schemaType": "AVRO", "references": [], "metadata": None, "ruleSet": None}
    )
    assert parsed.text == '"int"'

"""Table-driven tests of the pure compatibility module (no HTTP)."""

from __future__ import annotations

import pytest
from eddy.services.schema_registry.avro_parser import parse_schema
from eddy.services.schema_registry.compatibility import Level, can_read, check_compatibility

from .compat_cases import CASES, Case, fld, one, rec

pytestmark = pytest.mark.timeout(30)


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert {c.level for c in CASES} == {level.value for level in Level}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case) -> None:
    history = [(i + 1, parse_schema(text)) for i, text in enumerate(case.history)]
    messages = check_compatibility(Level(case.level), parse_schema(case.candidate), history)
    assert (not messages) == case.compatible, f"{case.rule}: {messages}"


def test_messages_name_the_problem() -> None:
    reader = parse_schema(rec("R", fld("a", "int"), fld("b", "int")))
    writer = parse_schema(rec("R", fld("a", "int")))
    [problem] = can_read(reader, writer, "new", "old")
    assert problem.error_type == "READER_FIELD_MISSING_DEFAULT_VALUE"
    assert problem.path == "/fields/1"
    assert "'b'" in problem.description and "new schema" in problem.description


def test_level_messages_include_version_and_level() -> None:
    old = parse_schema(one("long"))
    messages = check_compatibility(Level.BACKWARD, parse_schema(one("int")), [(3, old)])
    assert any("TYPE_MISMATCH" in m for m in messages)
    assert "{oldSchemaVersion: 3}" in messages
    assert messages[-1] == "{compatibility: 'BACKWARD'}"


def test_mutually_recursive_types_terminate() -> None:
    text = (
        '{"type":"record","name":"A","fields":[{"name":"b","type":["null",'
        '{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]}]}]}]}'
    )
    assert can_read(parse_schema(text), parse_schema(text)) == []


def test_level_parse() -> None:
    assert Level.parse("backward_transitive") is Level.BACKWARD_TRANSITIVE
    assert Level.parse("SIDEWAYS") is None
    assert Level.parse(3) is None

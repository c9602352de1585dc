"""Schema validation and the canonical form used for equality."""

from __future__ import annotations

import json

import fastavro
import pytest
from eddy.services.schema_registry.avro_parser import SchemaParseError, parse_schema
from eddy.services.schema_registry.canonical import canonical_json

pytestmark = pytest.mark.timeout(30)


def canon(value: object) -> str:
    return canonical_json(parse_schema(value if isinstance(value, str) else json.dumps(value)))


@pytest.mark.parametrize(
    "schema",
    [
        "not json",
        '"strin"',
        {"type": "record", "name": "A", "fields": [{"name": "a", "type": "int", "default": "x"}]},
        {"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]},
        {"type": "record", "name": "1A", "fields": []},
        {"type": "record", "name": "A"},
        {"type": "record", "name": "A", "fields": [{"name": "a", "type": "Missing"}]},
        {"type": "enum", "name": "E", "symbols": ["A", "A"]},
        {"type": "enum", "name": "E", "symbols": ["A"], "default": "B"},
        {"type": "fixed", "name": "F"},
        {"type": "array"},
        ["null", "null"],
        ["int", ["string"]],
        {"type": "record", "name": "A", "fields": [{"name": "a", "type": ["null", "int"], "default": 1}]},
        {
            "type": "record",
            "name": "A",
            "fields": [{"name": "a", "type": {"type": "array", "items": "int"}, "default": [1, "x"]}],
        },
        {"type": "record", "name": "int", "fields": []},
        '{"type": "record", "name": "A", "fields": [{"name": "a", "type": "double", "default": NaN}]}',
        '{"type": "record", "name": "A", "fields": [{"name": "a", "type": "double", "default": Infinity}]}',
        [{"type": "record", "name": "A", "fields": []}, {"type": "record", "name": "A", "fields": []}],
    ],
)
def test_invalid_schemas_are_rejected(schema: object) -> None:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    with pytest.raises(SchemaParseError):
        parse_schema(text)


def test_whitespace_and_attribute_order_do_not_matter() -> None:
    a = '{"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]}'
    b = '{\n  "fields": [{"type": "int",\n "name": "x"}],\n  "name": "A",\n  "type": "record"\n}'
    assert canon(a) == canon(b)


def test_namespace_spelling_and_primitive_objects_are_normalised() -> None:
    short = {"type": "record", "name": "A", "namespace": "n.s", "fields": [{"name": "x", "type": {"type": "int"}}]}
    full = {"type": "record", "name": "n.s.A", "fields": [{"name": "x", "type": "int", "order": "ascending"}]}
    assert canon(short) == canon(full)


def test_defaults_docs_and_aliases_are_kept() -> None:
    base = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "int"}]}
    with_default = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "int", "default": 1}]}
    with_alias = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "int", "aliases": ["y"]}]}
    assert len({canon(base), canon(with_default), canon(with_alias)}) == 3
    assert '"default":1' in canon(with_default)


def test_canonical_form_is_a_valid_schema_for_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "Outer",
        "namespace": "com.acme",
        "fields": [
            {
                "name": "inner",
                "type": {"type": "record", "name": "Inner", "namespace": "", "fields": [{"name": "v", "type": "long"}]},
            },
            {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"}},
            {"name": "e2", "type": "E"},
            {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "next", "type": ["null", "Outer"], "default": None},
        ],
    }
    text = canon(schema)
    fastavro.parse_schema(json.loads(text))
    assert canon(text) == text
    assert '"namespace":""' in text  # the null-namespace record keeps its identity


def test_recursive_schema_parses() -> None:
    schema = {"type": "record", "name": "L", "fields": [{"name": "next", "type": ["null", "L"]}]}
    assert canon(schema) == '{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}'

"""The contract JSON Schema (``schemas/contract.schema.json``): published, equal to what the parsers declare, and
applied by ``eddy streams validate`` with the same messages.

Drift between the schema and the parsers fails here in both directions: every key the schema lists is one
the parser takes (an unknown key at any level is refused by both), and every bound and enum of the schema is
the parser's (tried at the bound, beyond it and outside the enum, on the parser and on the published file).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from eddy.cli.main import main
from eddy.contracts.contract_schema import contract_schema, schema_problems, schema_text
from eddy.contracts.durations import ContractError
from eddy.contracts.retraining import PROMOTION_FIELDS, RELEASE_FIELDS, PromotionPolicy, ReleaseBudget
from eddy.contracts.stream import _parse as parse_contract
from eddy.contracts.stream import load_contract
from eddy.core.settings import REPO_ROOT

SCHEMA_FILE = REPO_ROOT / "schemas" / "contract.schema.json"
DEMO = REPO_ROOT / "schemas" / "streams" / "demo.yaml"
# Every contract in the repository: the demo, the benchmarks' streams.
CONTRACTS = sorted([DEMO, *(REPO_ROOT / "bench" / "streams").glob("*.yaml")])
DOCS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
MODELINE = "# yaml-language-server: $schema=../contract.schema.json"
UNKNOWN = "zz_unknown"


@pytest.fixture(scope="module")
def published() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return schema


@functools.cache
def _demo() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    return doc


def demo_doc() -> dict[str, Any]:
    """A fresh copy of the demo contract (read once: PyYAML's pure-Python reader is most of these tests' time)."""
    return copy.deepcopy(_demo())


def write(tmp_path: Path, doc: Any, name: str = "s.yaml") -> Path:
    """``doc`` as a contract file beside the demo's event schema."""
    shutil.copy(DEMO.with_name("demo.avsc"), tmp_path / "demo.avsc")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def parser_refuses(tmp_path: Path, doc: dict[str, Any]) -> str | None:
    """The parser's message for ``doc``, or None if it parses (the file's reading is load_contract's, tested above)."""
    shutil.copy(DEMO.with_name("demo.avsc"), tmp_path / "demo.avsc")
    try:
        parse_contract(copy.deepcopy(doc), tmp_path / "s.yaml")
    except ContractError as exc:
        return str(exc)
    return None


def published_problems(schema: dict[str, Any], doc: Any) -> list[str]:
    """What the published file says of ``doc``, through jsonschema alone (formatted as eddy formats it)."""
    jsonschema.Draft7Validator.check_schema(schema)
    return schema_problems(doc, schema)


# --- published ---------------------------------------------------------------------------------------------


def test_the_published_schema_is_the_generated_one(published: dict[str, Any]) -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), "run `eddy streams schema > schemas/contract.schema.json`"
    jsonschema.Draft7Validator.check_schema(published)


def test_eddy_streams_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["streams", "schema"]) == 0
    assert capsys.readouterr().out == SCHEMA_FILE.read_text()


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.name)
def test_repository_contracts_match(published: dict[str, Any], path: Path) -> None:
    assert published_problems(published, yaml.safe_load(path.read_text())) == []
    load_contract(path)


def doc_examples() -> Iterator[tuple[str, dict[str, Any]]]:
    """The contracts (a mapping with ``stream:``) in the docs' YAML blocks."""
    for path in DOCS:
        for block in re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S):
            doc = yaml.safe_load(block)
            if isinstance(doc, dict) and "stream" in doc:
                yield path.name, doc


def test_contract_examples_in_the_docs_match(published: dict[str, Any]) -> None:
    examples = list(doc_examples())
    assert examples, "no contract example found in the docs"
    for where, doc in examples:
        assert published_problems(published, doc) == [], where


def test_the_demo_contract_names_the_schema_for_editors() -> None:
    assert MODELINE in DEMO.read_text().splitlines()
    assert (DEMO.parent / MODELINE.split("=", 1)[1]).resolve() == SCHEMA_FILE


# --- broken contracts: refused by the schema, with the messages `eddy streams validate` prints ---------------


def changed(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """The demo contract with ``value`` at ``path`` (``DELETE`` removes the key)."""
    doc = demo_doc()
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


DELETE = object()
BROKEN = [
    # (what is wrong, the change, a part of the one message expected)
    (
        "wrong type",
        ("monitoring", "quality_window"),
        "big",
        "monitoring.quality_window: 'big' is not of type 'integer'",
    ),
    ("unknown field", ("featurez",), {}, "contract: Additional properties are not allowed ('featurez' was unexpected)"),
    (
        "bad enum",
        ("label", "task"),
        "ranking",
        "label.task: 'ranking' is not one of ['binary', 'multiclass', 'regression']",
    ),
    ("missing required", ("models",), DELETE, "contract: 'models' is a required property"),
    ("bad duration", ("allowed_lateness",), "1 week", "allowed_lateness: '1 week' does not match"),
    ("unknown nested field", ("monitoring", "data_drift", "size"), 5, "monitoring.data_drift: Additional properties"),
    ("out of bounds", ("retraining", "holdout"), 0.95, "retraining.holdout: 0.95 is greater than the maximum of 0.9"),
    ("feature type", ("features", "x0", "type"), "decimal", "features.x0.type: 'decimal' is not one of"),
    ("two-key step", ("models", 0, "pipeline", 0, "compose.Select"), ["x0"], "models[0].pipeline[0]: {"),
    ("dotted name", ("stream",), "demo.v2", "stream: 'demo.v2' does not match '^[^.]+$'"),
    ("detector", ("monitoring", "concept_drift", "detector"), "adwinn", "monitoring.concept_drift.detector: 'adwinn'"),
    ("no features", ("features",), {}, "features: {} should be non-empty"),
    (
        "too few shards",
        ("models", 0, "learning"),
        {"mode": "sharded", "shards": 1},
        "models[0].learning.shards: 1 is less than",
    ),
    (
        "boolean count",
        ("retraining", "release", "probe"),
        True,
        "retraining.release.probe: True is not of type 'integer'",
    ),
]


@pytest.mark.parametrize(("change", "value", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_contracts_are_refused_with_the_messages_of_eddy_streams_validate(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    published: dict[str, Any],
    change: tuple[str | int, ...],
    value: Any,
    expected: str,
) -> None:
    doc = changed(change, value)
    problems = published_problems(published, doc)
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    path = write(tmp_path, doc)
    assert main(["streams", "validate", str(path)]) == 1
    printed = capsys.readouterr().err.splitlines()
    assert printed == [f"eddy: error: {path}: {problem}" for problem in problems]


def test_every_problem_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = changed(("label", "task"), "ranking")
    doc["retraining"]["canary"] = 0.9
    assert main(["streams", "validate", str(write(tmp_path, doc))]) == 1
    printed = capsys.readouterr().err
    assert "label.task:" in printed and "retraining.canary: 0.9 is greater than the maximum of 0.5" in printed


def test_then_the_parser_checks_what_needs_more_than_one_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], published: dict[str, Any]
) -> None:
    doc = changed(("monitoring", "segment"), "country")  # a string, but not a feature of the contract
    assert published_problems(published, doc) == []
    path = write(tmp_path, doc)
    assert main(["streams", "validate", str(path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"eddy: error: {path}: monitoring.segment 'country' is not a feature of the contract"
    )


def test_a_valid_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, demo_doc())
    assert main(["streams", "validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: stream 'demo' is valid (4 features, binary)"


def test_a_sandbox_needs_only_its_names(published: dict[str, Any]) -> None:
    assert published_problems(published, {"stream": "demo-next", "sandbox_of": "demo"}) == []
    assert published_problems(published, {"stream": "demo-next"}) == [
        "contract: 'event_schema' is a required property",
        "contract: 'features' is a required property",
        "contract: 'models' is a required property",
    ]


# --- the schema and the parsers agree ------------------------------------------------------------------------


def full_doc() -> dict[str, Any]:
    """The demo contract with every section present, so each key of the schema has a place to be tried."""
    doc = demo_doc()
    doc["pii"] = {"drop": [], "hash": []}
    doc["models"][0]["learning"] = {"mode": "sharded", "shards": 2}
    doc["retraining"]["triggers"]["quality"] = {"metric": "accuracy", "below": 0.5, "window": 100}
    doc["retraining"]["triggers"]["schedule"] = "6h"
    return doc


Place = tuple[str | int, ...]


def places(schema: dict[str, Any], doc: Any, where: Place = ()) -> Iterator[tuple[Place, dict[str, Any], Any]]:
    """Every (path, schema fragment, value) of ``doc`` that the schema describes, depth first."""
    yield where, schema, doc
    if isinstance(doc, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in doc.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                yield from places(sub, value, (*where, key))
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for index, value in enumerate(doc):
            yield from places(schema["items"], value, (*where, index))


def put(doc: dict[str, Any], where: Place, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return doc


def test_the_full_document_is_valid(tmp_path: Path) -> None:
    assert schema_problems(full_doc()) == []
    assert parser_refuses(tmp_path, full_doc()) is None


def test_an_unknown_key_is_refused_by_both_everywhere(tmp_path: Path) -> None:
    tried = []
    for where, fragment, value in places(contract_schema(), full_doc()):
        if fragment.get("additionalProperties") is False and isinstance(value, dict):
            doc = put(full_doc(), (*where, UNKNOWN), 1) if where else {**full_doc(), UNKNOWN: 1}
            assert schema_problems(doc), where
            refused = parser_refuses(tmp_path, doc)
            assert refused and UNKNOWN in refused, f"the parser takes a key the schema refuses at {where}"
            tried.append(where)
    # The contract, 4 features, label, pii, monitoring and its 5 sections, retraining and its 4, a model, learning.
    assert len(tried) >= 18, tried


def bound_cases(fragment: dict[str, Any]) -> Iterator[tuple[Any, bool]]:
    """Values at and beyond each bound of a numeric fragment, with whether the bound admits them."""
    step = 1 if fragment.get("type") == "integer" else 0.001
    if "minimum" in fragment:
        yield fragment["minimum"], True
        yield fragment["minimum"] - step, False
    if "maximum" in fragment:
        yield fragment["maximum"], True
        yield fragment["maximum"] + step, False
    if "exclusiveMinimum" in fragment:
        yield fragment["exclusiveMinimum"], False
        yield fragment["exclusiveMinimum"] + step, True
    if "exclusiveMaximum" in fragment:
        yield fragment["exclusiveMaximum"], False
        yield fragment["exclusiveMaximum"] - step, True


def test_every_bound_is_the_parsers(tmp_path: Path) -> None:
    tried = 0
    for where, fragment, _ in places(contract_schema(), full_doc()):
        for value, admitted in bound_cases(fragment):
            doc = put(full_doc(), where, value)
            assert (schema_problems(doc) == []) is admitted, (where, value)
            refused = parser_refuses(tmp_path, doc)
            assert (refused is None) is admitted, f"{where} = {value!r}: schema {admitted}, parser {refused}"
            tried += 1
    assert tried >= 30


def test_every_enum_is_the_parsers(tmp_path: Path) -> None:
    tried = 0
    for where, fragment, _ in places(contract_schema(), full_doc()):
        if "enum" not in fragment:
            continue
        refused = parser_refuses(tmp_path, put(full_doc(), where, "zz-none"))
        assert refused and "zz-none" in refused, f"the parser takes {where} = 'zz-none'"
        for value in fragment["enum"]:
            refused = parser_refuses(tmp_path, put(full_doc(), where, value))
            # A value may still be refused with another key (a regression task with a binary-only section).
            assert refused is None or "is not one of" not in refused, f"{where} = {value!r}: {refused}"
        tried += 1
    assert tried >= 6


def test_dataclass_backed_tables() -> None:
    assert set(PROMOTION_FIELDS) == set(PromotionPolicy.__dataclass_fields__)
    assert set(RELEASE_FIELDS) == set(ReleaseBudget.__dataclass_fields__)

"""Properties of the contract validator, over generated contracts and records.

Contracts are generated with a few features of every type (double, long, string,
boolean), each with random required / min / max / allowed / pattern rules, and an
Avro event schema that matches them. Records are built to satisfy every rule, then
broken on purpose in known ways, so the expected violations are known exactly.

Runs are deterministic (``derandomize=True``) and write no example database.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml
from eddy.contracts.checks import CompiledChecker, check_record
from eddy.contracts.durations import ContractError
from eddy.contracts.stream import FeatureSpec, ModelSpec, StreamContract, load_contract
from eddy.core.topics import StreamTopics
from eddy.runtime.dlq import read_dlq_headers
from eddy.runtime.loop import InRecord
from eddy.services.validation.handlers import ValidateBatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

FEATURE_NAMES = ("amount", "count", "colour", "flag", "code", "score", "tag", "level")
ID_FIELDS = ("event_id", "id", "uid")
TIME_FIELDS = ("event_time_ms", "ts")
AVRO_TYPES = {"double": "double", "long": "long", "string": "string", "boolean": "boolean"}
# Patterns as users write them: anchored and not (search semantics), with classes, counts and flags.
PATTERNS = (r"^[a-z]+$", r"^[A-Z]{2}-\d{3}$", r"\d", r"^id_", r"@", r"(?i)^(yes|no)$", r"x$", r"^.{2,4}$")
BOUND = 1e6
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
ABSENT = object()  # marks a feature left out of the record altogether

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


# -- contracts ----------------------------------------------------------------------------------------------------


def in_range(ftype: str, lo: float | None, hi: float | None) -> st.SearchStrategy[Any]:
    """Finite numbers of ``ftype`` within [lo, hi] (a long's bounds are generated as ints)."""
    if ftype == "double":
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    return st.integers(LONG_MIN if lo is None else int(lo), LONG_MAX if hi is None else int(hi))


@st.composite
def numeric_spec(draw: st.DrawFn, name: str, ftype: str) -> FeatureSpec:
    bound: st.SearchStrategy[float] | st.SearchStrategy[int]
    if ftype == "double":
        # + 0.0 turns -0.0 into 0.0: bounds 0.0 and -0.0 compare equal yet make st.floats(0.0, -0.0) invalid.
        bound = st.floats(-BOUND, BOUND, allow_nan=False, allow_infinity=False).map(lambda x: x + 0.0)
    else:
        bound = st.integers(-int(BOUND), int(BOUND))
    lo, hi = draw(st.none() | bound), draw(st.none() | bound)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    allowed = None
    if draw(st.integers(0, 3)) == 0:  # a numeric category list now and then, within the bounds
        allowed = tuple(draw(st.lists(in_range(ftype, lo, hi), min_size=1, max_size=5, unique=True)))
    return FeatureSpec(name, ftype, draw(st.booleans()), lo, hi, allowed)


@st.composite
def string_spec(draw: st.DrawFn, name: str) -> FeatureSpec:
    pattern = draw(st.none() | st.sampled_from(PATTERNS))
    allowed = None
    if draw(st.booleans()):
        # With a pattern too, every allowed value matches it, so a conforming value can satisfy both rules.
        values = st.from_regex(pattern) if pattern is not None else st.text(min_size=1, max_size=8)
        allowed = tuple(draw(st.lists(values, min_size=1, max_size=5, unique=True)))
    return FeatureSpec(name, "string", draw(st.booleans()), allowed=allowed, pattern=pattern)


@st.composite
def feature_spec(draw: st.DrawFn, name: str) -> FeatureSpec:
    ftype = draw(st.sampled_from(sorted(AVRO_TYPES)))
    if ftype in ("double", "long"):
        return draw(numeric_spec(name, ftype))
    if ftype == "string":
        return draw(string_spec(name))
    return FeatureSpec(name, "boolean", draw(st.booleans()))


def event_schema(name: str, id_field: str, time_field: str, features: tuple[FeatureSpec, ...]) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [{"name": id_field, "type": "string"}, {"name": time_field, "type": "long"}]
    fields += [{"name": f.name, "type": ["null", AVRO_TYPES[f.type]], "default": None} for f in features]
    fields.append({"name": "note", "type": ["null", "string"], "default": None})  # in the schema, not a feature
    return {"type": "record", "name": "Event", "namespace": f"io.eddy.test.{name}", "fields": fields}


@st.composite
def contracts(draw: st.DrawFn, name: str = "s0") -> StreamContract:
    names = draw(st.lists(st.sampled_from(FEATURE_NAMES), min_size=1, max_size=6, unique=True))
    features = tuple(draw(feature_spec(n)) for n in names)
    id_field, time_field = draw(st.sampled_from(ID_FIELDS)), draw(st.sampled_from(TIME_FIELDS))
    schema = event_schema(name, id_field, time_field, features)
    model = ModelSpec("default", (("linear_model.LogisticRegression", {}),), tuple(sorted(names)))
    return StreamContract(name, schema, id_field, time_field, features, "binary", (model,))


# -- records ------------------------------------------------------------------------------------------------------


def conforming_value(spec: FeatureSpec) -> st.SearchStrategy[Any]:
    """Values that satisfy every rule of ``spec`` (never None)."""
    if spec.allowed is not None:
        return st.sampled_from(spec.allowed)  # generated within the bounds and matching the pattern
    if spec.type in ("double", "long"):
        return in_range(spec.type, spec.min, spec.max)
    if spec.type == "boolean":
        return st.booleans()
    if spec.pattern is not None:
        return st.from_regex(spec.pattern)
    return st.text(max_size=12)


@st.composite
def conforming_record(draw: st.DrawFn, contract: StreamContract) -> dict[str, Any]:
    record: dict[str, Any] = {
        contract.id_field: draw(st.text(min_size=1, max_size=12).filter(str.strip)),
        contract.time_field: draw(st.integers(1, LONG_MAX)),
        "note": draw(st.none() | st.text(max_size=5)),
    }
    for spec in contract.features:
        value = conforming_value(spec)
        if not spec.required:
            value = st.none() | st.just(ABSENT) | value
        chosen = draw(value)
        if chosen is not ABSENT:
            record[spec.name] = chosen
    return record


@dataclass(frozen=True)
class Breakage:
    field: str
    rule: str
    value: Any  # ABSENT: the field is removed from the record


def numeric_room(spec: FeatureSpec) -> bool:
    """Whether some in-range value of ``spec`` is not in its allowed list."""
    assert spec.allowed is not None
    if spec.type == "double":
        return spec.min is None or spec.max is None or spec.min < spec.max
    lo = LONG_MIN if spec.min is None else int(spec.min)
    hi = LONG_MAX if spec.max is None else int(spec.max)
    return hi - lo + 1 > len(spec.allowed)


def breakages(spec: FeatureSpec) -> list[st.SearchStrategy[Breakage]]:
    """Every way to break ``spec`` with a single violation, as strategies.

    A feature reports only its first broken rule, in the order type, finite, min, max, allowed, pattern.
    """
    out: list[st.SearchStrategy[Breakage]] = []

    def of(rule: str, values: st.SearchStrategy[Any]) -> None:
        out.append(values.map(lambda v: Breakage(spec.name, rule, v)))

    if spec.required:
        of("required", st.sampled_from([None, ABSENT]))
    if spec.type in ("double", "long"):
        of("type", st.booleans() | st.text(max_size=5) | st.lists(st.integers(), max_size=2) | st.just({}))
        if spec.type == "double":
            of("finite", st.sampled_from([math.nan, math.inf, -math.inf]))
        if spec.min is not None:
            below = spec.min - 1 if spec.type == "long" else spec.min
            of("min", in_range(spec.type, None, below).filter(lambda x: x < spec.min))
        if spec.max is not None:
            above = spec.max + 1 if spec.type == "long" else spec.max
            of("max", in_range(spec.type, above, None).filter(lambda x: x > spec.max))
    if spec.allowed is not None:
        allowed = spec.allowed
        if spec.type == "string":
            of("allowed", st.text(max_size=12).filter(lambda s: s not in allowed))
        elif spec.type != "boolean" and numeric_room(spec):
            of("allowed", in_range(spec.type, spec.min, spec.max).filter(lambda x: x not in allowed))
    elif spec.pattern is not None:
        regex = re.compile(spec.pattern)
        of("pattern", st.text(max_size=12).filter(lambda s: regex.search(s) is None))
    return out


def id_and_time_breakages(contract: StreamContract) -> list[st.SearchStrategy[Breakage]]:
    bad_ids = st.sampled_from(["", " ", "\t\n", None, 42, ABSENT])
    bad_times = st.sampled_from([0, -1, -(2**40), None, True, False, 1.5, "1700000000000", ABSENT])
    return [
        bad_ids.map(lambda v: Breakage(contract.id_field, "required", v)),
        bad_times.map(lambda v: Breakage(contract.time_field, "positive", v)),
    ]


def apply(record: dict[str, Any], breaks: list[Breakage]) -> dict[str, Any]:
    broken = dict(record)
    for b in breaks:
        if b.value is ABSENT:
            broken.pop(b.field, None)
        else:
            broken[b.field] = b.value
    return broken


@st.composite
def broken_record(
    draw: st.DrawFn, contract: StreamContract, max_breaks: int = 3
) -> tuple[dict[str, Any], list[Breakage]]:
    """A conforming record with one to ``max_breaks`` fields broken, and what was broken."""
    record = draw(conforming_record(contract))
    per_field = [*id_and_time_breakages(contract)] + [
        st.one_of(*b) for b in (breakages(f) for f in contract.features) if b
    ]
    chosen = draw(st.lists(st.sampled_from(range(len(per_field))), min_size=1, max_size=max_breaks, unique=True))
    breaks = [draw(per_field[i]) for i in sorted(chosen)]
    return apply(record, breaks), breaks


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def declared(contract: StreamContract) -> list[str]:
    return [contract.id_field, contract.time_field, *(f.name for f in contract.features)]


def avro_typed_value(ftype: str) -> st.SearchStrategy[Any]:
    """Any value Avro can decode for a nullable field of ``ftype``: None, NaN, infinities and extremes included."""
    values: dict[str, st.SearchStrategy[Any]] = {
        "double": st.floats(),
        "long": st.integers(LONG_MIN, LONG_MAX),
        "string": st.text(),
        "boolean": st.booleans(),
    }
    return st.none() | values[ftype]


@st.composite
def any_record(draw: st.DrawFn, contract: StreamContract) -> dict[str, Any]:
    """Conforming, broken, conforming but for some JSON-like feature values, Avro-typed anything, JSON-like anything."""
    kind = draw(st.sampled_from(["conforming", "broken", "mutated", "avro", "json"]))
    if kind == "conforming":
        return draw(conforming_record(contract))
    if kind == "mutated":  # valid id and time, so a fast path cannot stop before the odd values
        record = draw(conforming_record(contract))
        for spec in contract.features:
            if draw(st.booleans()):
                record[spec.name] = draw(json_values)
        return record
    if kind == "broken":
        return draw(broken_record(contract, max_breaks=6))[0]
    if kind == "avro":
        record = {contract.id_field: draw(st.text()), contract.time_field: draw(st.integers(LONG_MIN, LONG_MAX))}
        return record | {f.name: draw(avro_typed_value(f.type)) for f in contract.features}
    return {name: draw(json_values) for name in declared(contract)}


# -- properties of check_record -----------------------------------------------------------------------------------


@PROPERTY
@given(st.data())
def test_a_record_that_satisfies_every_rule_has_no_violations(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    record = data.draw(conforming_record(contract))
    assert check_record(record, contract) == []


@PROPERTY
@given(st.data())
def test_a_conforming_record_is_valid_avro_of_the_event_schema(data: st.DataObject) -> None:
    """The generator is honest: what it calls conforming is a record the stream's Avro schema can carry."""
    contract = data.draw(contracts())
    record = data.draw(conforming_record(contract))
    parsed = fastavro.parse_schema(contract.event_schema, named_schemas={})
    assert fastavro.validate(record, parsed, raise_errors=False)


@PROPERTY
@given(st.data())
def test_each_breakage_yields_exactly_its_violation(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    record, breaks = data.draw(broken_record(contract))
    violations = check_record(record, contract)
    assert [(v.field, v.rule) for v in violations] == [(b.field, b.rule) for b in breaks]
    for v, b in zip(violations, breaks, strict=True):
        expected = None if b.value is ABSENT else b.value
        assert same_value(v.value, expected), (v, b)
        if v.field not in (contract.id_field, contract.time_field):
            assert v.field in v.message


@PROPERTY
@given(st.data())
def test_violations_come_in_contract_order_and_name_only_declared_fields(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    record, _ = data.draw(broken_record(contract, max_breaks=6))
    # Undeclared keys are carried but never judged.
    undeclared = st.text(max_size=6).filter(lambda k: k not in record and k not in declared(contract))
    record.update(data.draw(st.dictionaries(undeclared, json_values, max_size=3)))
    order = declared(contract)
    fields = [v.field for v in check_record(record, contract)]
    assert set(fields) <= set(order)
    assert fields == sorted(fields, key=order.index)
    assert len(fields) == len(set(fields))  # at most one violation per field


@PROPERTY
@given(st.data())
def test_check_record_never_raises_on_any_decodable_record(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    record: dict[str, Any] = {
        contract.id_field: data.draw(st.text()),
        contract.time_field: data.draw(st.integers(LONG_MIN, LONG_MAX)),
    }
    for spec in contract.features:
        record[spec.name] = data.draw(avro_typed_value(spec.type))
    violations = check_record(record, contract)
    assert {v.field for v in violations} <= set(declared(contract))
    for v in violations:
        json.dumps(v.as_dict())  # the DLQ header must always be serialisable


@PROPERTY
@given(st.data())
def test_check_record_never_raises_on_any_json_like_values(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    record = {name: data.draw(json_values) for name in declared(contract)}
    violations = check_record(record, contract)
    assert {v.field for v in violations} <= set(declared(contract))
    found = {(v.field, v.rule) for v in violations}
    for spec in contract.features:
        value = record[spec.name]
        if spec.type in ("double", "long") and value is not None and type(value) not in (int, float):
            assert (spec.name, "type") in found, (spec, value)
    for v in violations:
        json.dumps(v.as_dict())


@PROPERTY
@given(st.data())
def test_the_compiled_checker_agrees_with_check_record(data: st.DataObject) -> None:
    contract = data.draw(contracts())
    record = data.draw(any_record(contract))
    assert CompiledChecker(contract)(record) == check_record(record, contract)


@settings(PROPERTY, report_multiple_bugs=False)
@given(st.data())
def test_the_compiled_checker_agrees_when_one_feature_holds_an_odd_value(data: st.DataObject) -> None:
    """A valid record but for one feature holding any JSON-like value, containers included."""
    contract = data.draw(contracts())
    record = data.draw(conforming_record(contract))
    spec = data.draw(st.sampled_from(contract.features))
    containers = st.lists(json_values, max_size=2) | st.dictionaries(st.text(max_size=3), json_values, max_size=2)
    record[spec.name] = data.draw(containers | json_values)
    expected = check_record(record, contract)
    assert [v.field for v in expected] in ([], [spec.name])
    assert CompiledChecker(contract)(record) == expected


# -- generated contracts and load_contract ------------------------------------------------------------------------


def contract_yaml(contract: StreamContract) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for f in contract.features:
        doc: dict[str, Any] = {"type": f.type, "required": f.required}
        for key in ("min", "max", "pattern"):
            if getattr(f, key) is not None:
                doc[key] = getattr(f, key)
        if f.allowed is not None:
            doc["allowed"] = list(f.allowed)
        features[f.name] = doc
    return {
        "stream": contract.name,
        "event_schema": "events.avsc",
        "id_field": contract.id_field,
        "time_field": contract.time_field,
        "features": features,
        "label": {"task": contract.task},
        "models": [
            {"name": m.name, "features": list(m.features), "pipeline": [{"linear_model.LogisticRegression": {}}]}
            for m in contract.models
        ],
    }


@settings(PROPERTY, max_examples=50)
@given(contracts())
def test_generated_contracts_are_what_load_contract_reads(contract: StreamContract) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "events.avsc").write_text(json.dumps(contract.event_schema))
        (Path(tmp) / "s.yaml").write_text(yaml.safe_dump(contract_yaml(contract), allow_unicode=True, sort_keys=False))
        assert load_contract(Path(tmp) / "s.yaml") == contract


FOREIGN_BRANCH = {"double": "string", "long": "double", "string": "long", "boolean": "string"}


@settings(PROPERTY, max_examples=20)
@given(st.sampled_from(sorted(AVRO_TYPES)), st.booleans())
def test_load_contract_refuses_a_feature_whose_avro_union_admits_another_type(ftype: str, nullable: bool) -> None:
    """Otherwise a record could decode with a value that no rule of the feature can check."""
    union = ["null", AVRO_TYPES[ftype], FOREIGN_BRANCH[ftype]] if nullable else [AVRO_TYPES[ftype], "int"]
    if union[-1] == "int" and ftype in ("double", "long"):
        union[-1] = "string"
    schema = {
        "type": "record",
        "name": "Event",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "event_time_ms", "type": "long"},
            {"name": "x", "type": union},
        ],
    }
    doc = {
        "stream": "s0",
        "event_schema": "events.avsc",
        "features": {"x": {"type": ftype}},
        "models": [{"name": "m", "pipeline": [{"linear_model.LogisticRegression": {}}]}],
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "events.avsc").write_text(json.dumps(schema))
        (Path(tmp) / "s.yaml").write_text(yaml.safe_dump(doc))
        with pytest.raises(ContractError, match="'x'"):
            load_contract(Path(tmp) / "s.yaml")


# -- properties of ValidateBatch ----------------------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[str, StreamContract], list[InRecord]]:
    streams = {name: draw(contracts(name)) for name in draw(st.sampled_from([["s0"], ["s0", "s1"]]))}
    records = []
    for offset in range(draw(st.integers(0, 20))):
        stream = draw(st.sampled_from(sorted(streams)))
        contract = streams[stream]
        if draw(st.booleans()):
            value = draw(conforming_record(contract))
        else:
            value, _ = draw(broken_record(contract))
        partition = draw(st.integers(0, 3))
        key = draw(st.none() | st.text(max_size=4))
        raw = f"raw-{offset}".encode()
        records.append(InRecord(StreamTopics(stream).events, partition, offset, key, value, 1000 + offset, [], raw))
    return streams, records


@PROPERTY
@given(batches())
def test_validate_batch_outputs_plus_dead_letters_are_the_inputs_in_order(
    batch: tuple[dict[str, StreamContract], list[InRecord]],
) -> None:
    streams, records = batch
    # Any 64-bit event time is "now" here, so the rule against times Kafka refuses (a unit test's) stays out of it.
    result = ValidateBatch(streams, wall_clock=lambda: 2.0**63 / 1000)(records)
    validated_topics = {StreamTopics(s).validated for s in streams}
    validated = [o for o in result.outputs if o.topic in validated_topics]
    # Anything else is a data profile of a stream, derived from the batch and tied to no input record.
    others = [o for o in result.outputs if o.topic not in validated_topics]
    assert all(o.topic in {StreamTopics(s).profiles for s in streams} and o.source is None for o in others)

    assert len(validated) + len(result.dead) == len(records)
    out_offsets = [o.source.offset for o in validated if o.source is not None]
    dead_offsets = [d.offset for d in result.dead]
    assert len(out_offsets) == len(validated)
    assert out_offsets == sorted(out_offsets) and dead_offsets == sorted(dead_offsets)
    assert sorted(out_offsets + dead_offsets) == [r.offset for r in records]
    by_offset = {r.offset: r for r in records}
    for out in validated:
        source = by_offset[out.source.offset] if out.source is not None else None
        assert source is not None and out.source is source
        contract = streams[source.stream]
        assert check_record(source.value, contract) == []
        assert out.topic == StreamTopics(source.stream).validated
        assert out.key == source.value[contract.id_field]
        assert out.value is source.value
        assert out.timestamp_ms == source.value[contract.time_field]
    for letter in result.dead:
        source = by_offset[letter.offset]
        violations = check_record(source.value, streams[source.stream])
        assert violations, "a valid record was dead-lettered"
        assert letter.violations == tuple(violations)
        assert letter.reason == f"contract:{violations[0].rule}"
        assert letter.stage == "validation"
        assert letter.value == source.raw
        assert letter.key == (source.key.encode() if source.key is not None else None)
        assert letter.dlq_topic == StreamTopics(source.stream).dlq
        headers = read_dlq_headers(letter.dlq_headers(now_ms=1))
        assert headers["reason"] == letter.reason
        assert headers["source.topic"] == source.topic
        assert headers["source.partition"] == str(source.partition)
        assert headers["source.offset"] == str(source.offset)
        assert [v["field"] for v in json.loads(headers["violations"])] == [v.field for v in violations]

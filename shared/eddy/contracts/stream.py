"""Stream contracts: one YAML file per stream under ``schemas/streams/``.

A contract names the stream's Avro event schema, which field is the id and which
the event time, what each feature must look like, the label's task and the
models that answer. Every service loads the same files, so adding a stream needs
no code.

A sandbox contract (``stream: demo-replay-1`` and ``sandbox_of: demo``) is a copy
of another stream's contract under a new name, so its own topics
(``demo-replay-1.events``, ...) run the whole pipeline, for instance on records
``eddy replay`` copied from the parent's. It inherits every key of the parent's
contract; any other key it sets replaces the parent's whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import yaml

from eddy.contracts.durations import ContractError, parse_duration_ms
from eddy.contracts.learning import EXACT, SHARDED, LearningSpec, parse_learning
from eddy.contracts.monitoring import MONITORING_FIELDS, MonitoringSpec, parse_monitoring
from eddy.contracts.retraining import RETRAINING_FIELDS, RetrainingSpec, parse_retraining
from eddy.contracts.shapes import Fields, count, duration, flag, names, one_of, section, text, unknown_keys

FEATURE_TYPES = {"double", "long", "string", "boolean"}
TASKS = {"binary", "multiclass", "regression"}

# Each mapping's keys and what they hold: the parser refuses any other key, and eddy.contracts.contract_schema
# publishes these as the contract's JSON Schema (schemas/contract.schema.json).
FEATURE_FIELDS: Fields = {
    "type": one_of(FEATURE_TYPES),
    "required": flag(),
    "min": {"type": "number", "description": "numeric features only"},
    "max": {"type": "number", "description": "numeric features only"},
    "allowed": {"type": "array", "items": {"type": ["string", "number", "boolean"]}},
    "pattern": text(format="regex", description="a regular expression every value matches; strings only"),
}
LABEL_FIELDS: Fields = {"field": text(minLength=1), "task": one_of(TASKS)}
PII_FIELDS: Fields = {"drop": names(), "hash": names()}
LEARNING_FIELDS: Fields = {"mode": one_of((EXACT, SHARDED)), "shards": count(2)}
MODEL_FIELDS: Fields = {
    "name": text(minLength=1),
    "features": names(),
    "pipeline": {
        "type": "array",
        "minItems": 1,
        "description": "river steps, each a one-key mapping 'module.Class: {params}' (or a list of positional ones)",
        "items": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"type": ["object", "array", "null"]},
        },
    },
    "learning": section(LEARNING_FIELDS, "exact (one writer) or sharded (shards writers)"),
}
CONTRACT_FIELDS: Fields = {
    "stream": text(minLength=1, pattern=r"^[^.]+$", description="the stream's name: its topics are NAME.events, ..."),
    "sandbox_of": text(description="the stream whose contract this one copies (its other keys replace the parent's)"),
    "event_schema": text(description="the Avro schema of an event, a file beside the contract"),
    "id_field": text(),
    "time_field": text(),
    "allowed_lateness": duration(),
    "features": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": section(FEATURE_FIELDS, "what one feature must look like"),
    },
    "label": section(LABEL_FIELDS, "the label's field and task"),
    "pii": section(PII_FIELDS, "fields dropped, or replaced by a salted SHA-256, at ingestion"),
    "monitoring": section(MONITORING_FIELDS, "how quality and drift are watched"),
    "retraining": section(RETRAINING_FIELDS, "when to retrain, and how a challenger earns promotion"),
    "models": {
        "type": "array",
        "minItems": 1,
        "description": "the first is the champion",
        "items": section(MODEL_FIELDS, "a declarative river pipeline", nullable=False, required=["name"]),
    },
}
# Keys a contract must have; a sandbox (sandbox_of) needs only its name and its parent's.
REQUIRED = ("stream", "event_schema", "features", "models")
SANDBOX_REQUIRED = ("stream", "sandbox_of")
# What to do about a missing or empty contracts folder; callers pass only the folder, not the setting it came from.
CONTRACTS_DIR_HINT = "set EDDY_CONTRACTS_DIR (the contracts_dir setting) to the folder of the stream contracts"


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature must look like."""

    name: str
    type: str
    required: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None

    @property
    def regex(self) -> re.Pattern[str] | None:
        return _compiled(self.pattern) if self.pattern is not None else None


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True)
class PiiSpec:
    """Fields that never leave ingestion as they came: dropped, or replaced by a salted SHA-256."""

    drop: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A declarative river pipeline: ``[{"preprocessing.StandardScaler": {}}, ...]``, and how it learns."""

    name: str
    pipeline: tuple[tuple[str, dict[str, Any] | list[Any]], ...]
    features: tuple[str, ...]
    # Not part of to_json(): the model is the same river pipeline whichever way it learns. A plain (frozen)
    # default, so a spec pickled before the field existed (in a checkpoint) restores as exact.
    learning: LearningSpec = LearningSpec()  # noqa: RUF009 (frozen, so one shared default is safe)

    @property
    def shards(self) -> int:
        """How many independent single writers learn this model (1: exact)."""
        return self.learning.shards

    def to_json(self) -> str:
        steps = [{step: params} for step, params in self.pipeline]
        return json.dumps({"name": self.name, "features": list(self.features), "pipeline": steps}, sort_keys=True)


@dataclass(frozen=True)
class StreamContract:
    """Everything eddy knows about one stream."""

    name: str
    event_schema: dict[str, Any]
    id_field: str
    time_field: str
    features: tuple[FeatureSpec, ...]
    task: str
    models: tuple[ModelSpec, ...]
    path: Path | None = field(default=None, compare=False)
    label_field: str = "label"
    allowed_lateness_ms: int = 24 * 3600 * 1000
    pii: PiiSpec = field(default_factory=PiiSpec)
    monitoring: MonitoringSpec = field(default_factory=MonitoringSpec)
    retraining: RetrainingSpec = field(default_factory=RetrainingSpec)
    sandbox_of: str | None = None
    """The stream this one is a sandbox of (it took that stream's contract), else None."""

    @property
    def champion(self) -> ModelSpec:
        """The model that answers until the model registry says otherwise (see shared/eddy/ml/roles.py)."""
        return self.models[0]

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(f"stream {self.name!r} has no model {name!r}")

    def feature(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(name)


def load_contract(path: Path) -> StreamContract:
    """Read and check one contract file.

    Raises
    ------
    ContractError
        With the file name and what is wrong, for any problem.
    """
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ContractError(f"{path}: cannot read contract: {exc}") from exc
    if not isinstance(doc, dict):
        raise ContractError(f"{path}: a contract must be a mapping")
    try:
        if "sandbox_of" in doc:
            return replace(_parse(_inherited(doc, path), path), sandbox_of=doc["sandbox_of"])
        return _parse(doc, path)
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from exc


def _inherited(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """A sandbox's contract: its parent's, found in the same directory, with the sandbox's own keys on top."""
    parent = _required(doc, "sandbox_of", str)
    _required(doc, "stream", str)
    for sibling in sorted(path.parent.glob("*.yaml")):
        if sibling.resolve() == path.resolve():
            continue
        try:
            found = yaml.safe_load(sibling.read_text())
        except (OSError, yaml.YAMLError):
            # A broken sibling is reported when it is loaded itself; it cannot be the parent meant here.
            continue
        if not isinstance(found, dict) or found.get("stream") != parent:
            continue
        if "sandbox_of" in found:
            raise ContractError(f"sandbox_of {parent!r}: {sibling.name} is itself a sandbox; name the stream it copies")
        return {**found, **{k: v for k, v in doc.items() if k != "sandbox_of"}}
    raise ContractError(f"sandbox_of {parent!r}: no contract in {path.parent} declares stream {parent!r}")


def load_contracts(directory: Path, only: tuple[str, ...] = ()) -> dict[str, StreamContract]:
    """All contracts in ``directory``, or just the streams named in ``only``.

    Raises
    ------
    ContractError
        For a contract that does not load, and for a folder that is missing or holds no contract: a process
        that serves no stream because its contracts are elsewhere would look healthy and do nothing.

    >>> load_contracts(Path("/no/such/folder"))
    Traceback (most recent call last):
    ...
    eddy.contracts.durations.ContractError: /no/such/folder: no folder of stream contracts here; ...
    """
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        what = "holds no stream contract (*.yaml)" if directory.is_dir() else "no folder of stream contracts here"
        raise ContractError(f"{directory}: {what}; {CONTRACTS_DIR_HINT}")
    contracts = {}
    for path in paths:
        contract = load_contract(path)
        if contract.name in contracts:
            raise ContractError(f"{path}: stream {contract.name!r} is declared twice")
        contracts[contract.name] = contract
    missing = [s for s in only if s not in contracts]
    if missing:
        raise ContractError(f"unknown stream(s) {', '.join(missing)}; known: {', '.join(sorted(contracts)) or 'none'}")
    return {n: c for n, c in contracts.items() if not only or n in only}


def _parse(doc: dict[str, Any], path: Path) -> StreamContract:
    _no_unknown(doc, CONTRACT_FIELDS, "contract")
    name = _required(doc, "stream", str)
    if "." in name or not name:
        raise ContractError(f"stream name {name!r} must be non-empty and contain no dot")
    schema_file = path.parent / _required(doc, "event_schema", str)
    try:
        event_schema = json.loads(schema_file.read_text())
        fastavro.parse_schema(event_schema)
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise ContractError(f"event schema {schema_file.name}: {exc}") from exc
    schema_fields = {f["name"]: f["type"] for f in event_schema.get("fields", [])}
    id_field = doc.get("id_field", "event_id")
    time_field = doc.get("time_field", "event_time_ms")
    for role, fname in (("id_field", id_field), ("time_field", time_field)):
        if fname not in schema_fields:
            raise ContractError(f"{role} {fname!r} is not a field of the event schema")
    features = tuple(_feature(fname, spec, schema_fields) for fname, spec in (doc.get("features") or {}).items())
    if not features:
        raise ContractError("a contract needs at least one feature")
    label = doc.get("label") or {}
    _no_unknown(label, LABEL_FIELDS, "label")
    task = label.get("task", "binary")
    if task not in TASKS:
        raise ContractError(f"label task {task!r} is not one of {sorted(TASKS)}")
    label_field = label.get("field", "label")
    if not isinstance(label_field, str) or not label_field:
        raise ContractError("label field must be a non-empty string")
    names = {f.name for f in features}
    models = tuple(_model(m, names) for m in doc.get("models") or [])
    if not models:
        raise ContractError("a contract needs at least one model (the first is the champion)")
    lateness = parse_duration_ms(doc.get("allowed_lateness", "24h"), "allowed_lateness")
    pii = _pii(doc.get("pii") or {}, schema_fields, {id_field, time_field} | names)
    try:
        monitoring = parse_monitoring(doc.get("monitoring"), {f.name: f.type for f in features})
        retraining = parse_retraining(doc.get("retraining"), [m.name for m in models], task)
    except ValueError as exc:
        raise ContractError(str(exc)) from exc
    if monitoring.estimated_quality is not None and task != "binary":
        # Regression has no sound label-free estimate here, and multiclass is not built yet (docs/monitoring.md).
        raise ContractError(f"monitoring.estimated_quality needs a binary task, not {task!r}")
    return StreamContract(
        name,
        event_schema,
        id_field,
        time_field,
        features,
        task,
        models,
        path,
        label_field,
        lateness,
        pii,
        monitoring,
        retraining,
    )


def _pii(doc: dict[str, Any], schema_fields: dict[str, Any], protected: set[str]) -> PiiSpec:
    _no_unknown(doc, PII_FIELDS, "pii")
    drop = tuple(doc.get("drop") or ())
    hashed = tuple(doc.get("hash") or ())
    for name in (*drop, *hashed):
        if name in protected:
            raise ContractError(f"pii field {name!r} is the id, the time or a feature: it cannot be dropped or hashed")
    for name in hashed:
        types = schema_fields.get(name)
        if types is None:
            raise ContractError(f"pii hash field {name!r} is not a field of the event schema")
        if "string" not in (types if isinstance(types, list) else [types]):
            raise ContractError(f"pii hash field {name!r} must be a string in the event schema (it holds the hash)")
    for name in drop:
        if name in schema_fields:
            raise ContractError(f"pii drop field {name!r} must not be in the event schema: it never reaches Kafka")
    return PiiSpec(drop, hashed)


def _no_unknown(doc: dict[str, Any], fields: Fields, where: str) -> None:
    problem = unknown_keys(doc, fields, where)
    if problem:
        raise ContractError(problem)


def _required(doc: dict[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise ContractError(f"{key!r} is required and must be a {kind.__name__}")
    return value


def _feature(name: str, spec: dict[str, Any] | None, schema_fields: dict[str, Any]) -> FeatureSpec:
    spec = spec or {}
    _no_unknown(spec, FEATURE_FIELDS, f"feature {name!r}")
    ftype = spec.get("type", "double")
    if ftype not in FEATURE_TYPES:
        raise ContractError(f"feature {name!r}: type {ftype!r} is not one of {sorted(FEATURE_TYPES)}")
    if name not in schema_fields:
        raise ContractError(f"feature {name!r} is not a field of the event schema")
    avro_types = schema_fields[name] if isinstance(schema_fields[name], list) else [schema_fields[name]]
    compatible = {"double": {"double", "float", "int", "long"}, "long": {"int", "long"}}.get(ftype, {ftype})
    # Every branch but null must fit the feature's type: a union that also holds a string would let
    # records through that no numeric rule can check.
    branches = [t for t in avro_types if t != "null"]
    if not branches or not all(isinstance(t, str) and t in compatible for t in branches):
        raise ContractError(f"feature {name!r} is {ftype} in the contract but {avro_types} in the schema")
    required = bool(spec.get("required", True))
    lo, hi = spec.get("min"), spec.get("max")
    for bound, value in (("min", lo), ("max", hi)):
        if value is None:
            continue
        if ftype not in ("double", "long"):
            raise ContractError(f"feature {name!r}: {bound} applies to numeric features only")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ContractError(f"feature {name!r}: {bound} must be a number, got {value!r}")
    if lo is not None and hi is not None and lo > hi:
        raise ContractError(f"feature {name!r}: min {lo} is above max {hi}")
    allowed = spec.get("allowed")
    pattern = spec.get("pattern")
    if pattern is not None:
        if ftype != "string":
            raise ContractError(f"feature {name!r}: a pattern applies to strings only")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ContractError(f"feature {name!r}: pattern {pattern!r} is not a regular expression: {exc}") from exc
    return FeatureSpec(name, ftype, required, lo, hi, tuple(allowed) if allowed is not None else None, pattern)


def _check_parameter_names(params: Any, model: str) -> None:
    """Refuse parameter names YAML turned into something else, above all ``on:`` (feature_extraction.Agg)."""
    if isinstance(params, list):
        for item in params:
            _check_parameter_names(item, model)
    elif isinstance(params, dict):
        for key, value in params.items():
            if not isinstance(key, str):
                raise ContractError(
                    f"model {model!r}: parameter name {key!r} is not a string; YAML reads on, off, yes and no "
                    f"as booleans, so quote such names ('on': ...)"
                )
            _check_parameter_names(value, model)


def _model(doc: dict[str, Any], feature_names: set[str]) -> ModelSpec:
    name = _required(doc, "name", str)
    _no_unknown(doc, MODEL_FIELDS, f"model {name!r}")
    steps = []
    for step in doc.get("pipeline") or []:
        if not isinstance(step, dict) or len(step) != 1:
            raise ContractError(f"model {name!r}: each pipeline step is a one-key mapping 'module.Class: {{params}}'")
        ((estimator, params),) = step.items()
        _check_parameter_names(params, name)
        # A mapping gives keyword arguments; a list gives positional ones (compose.TransformerUnion, compose.Select).
        steps.append((str(estimator), list(params) if isinstance(params, list) else dict(params or {})))
    if not steps:
        raise ContractError(f"model {name!r}: the pipeline is empty")
    features = tuple(doc.get("features") or sorted(feature_names))
    unknown = [f for f in features if f not in feature_names]
    if unknown:
        raise ContractError(f"model {name!r}: features {unknown} are not declared in the contract")
    return ModelSpec(name, tuple(steps), features, parse_learning(doc.get("learning"), name))

"""Stream contracts: one YAML file per stream under ``schemas/streams/``.

A contract names the stream's Avro event schema, which field is the id and which
the event time, what each feature must look like, the label's task and the
models that answer. Every service loads the same files, so adding a stream needs
no code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import yaml

FEATURE_TYPES = {"double", "long", "string", "boolean"}
TASKS = {"binary", "multiclass", "regression"}


class ContractError(ValueError):
    """A contract that does not parse or contradicts its schema."""


@dataclass(frozen=True)
class FeatureSpec:
    """What one feature must look like."""

    name: str
    type: str
    required: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A declarative river pipeline: ``[{"preprocessing.StandardScaler": {}}, ...]``."""

    name: str
    pipeline: tuple[tuple[str, dict[str, Any]], ...]
    features: tuple[str, ...]

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

    @property
    def champion(self) -> ModelSpec:
        return self.models[0]

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
        return _parse(doc, path)
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from exc


def load_contracts(directory: Path, only: tuple[str, ...] = ()) -> dict[str, StreamContract]:
    """All contracts in ``directory``, or just the streams named in ``only``."""
    contracts = {}
    for path in sorted(directory.glob("*.yaml")):
        contract = load_contract(path)
        if contract.name in contracts:
            raise ContractError(f"{path}: stream {contract.name!r} is declared twice")
        contracts[contract.name] = contract
    missing = [s for s in only if s not in contracts]
    if missing:
        raise ContractError(f"unknown stream(s) {', '.join(missing)}; known: {', '.join(sorted(contracts)) or 'none'}")
    return {n: c for n, c in contracts.items() if not only or n in only}


def _parse(doc: dict[str, Any], path: Path) -> StreamContract:
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
    task = label.get("task", "binary")
    if task not in TASKS:
        raise ContractError(f"label task {task!r} is not one of {sorted(TASKS)}")
    names = {f.name for f in features}
    models = tuple(_model(m, names) for m in doc.get("models") or [])
    if not models:
        raise ContractError("a contract needs at least one model (the first is the champion)")
    return StreamContract(name, event_schema, id_field, time_field, features, task, models, path)


def _required(doc: dict[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind):
        raise ContractError(f"{key!r} is required and must be a {kind.__name__}")
    return value


def _feature(name: str, spec: dict[str, Any] | None, schema_fields: dict[str, Any]) -> FeatureSpec:
    spec = spec or {}
    ftype = spec.get("type", "double")
    if ftype not in FEATURE_TYPES:
        raise ContractError(f"feature {name!r}: type {ftype!r} is not one of {sorted(FEATURE_TYPES)}")
    if name not in schema_fields:
        raise ContractError(f"feature {name!r} is not a field of the event schema")
    avro_types = schema_fields[name] if isinstance(schema_fields[name], list) else [schema_fields[name]]
    compatible = {"double": {"double", "float", "int", "long"}, "long": {"int", "long"}}.get(ftype, {ftype})
    if not any(isinstance(t, str) and t in compatible for t in avro_types):
        raise ContractError(f"feature {name!r} is {ftype} in the contract but {avro_types} in the schema")
    required = bool(spec.get("required", True))
    lo, hi = spec.get("min"), spec.get("max")
    if lo is not None and hi is not None and lo > hi:
        raise ContractError(f"feature {name!r}: min {lo} is above max {hi}")
    allowed = spec.get("allowed")
    return FeatureSpec(name, ftype, required, lo, hi, tuple(allowed) if allowed is not None else None)


def _model(doc: dict[str, Any], feature_names: set[str]) -> ModelSpec:
    name = _required(doc, "name", str)
    steps = []
    for step in doc.get("pipeline") or []:
        if not isinstance(step, dict) or len(step) != 1:
            raise ContractError(f"model {name!r}: each pipeline step is a one-key mapping 'module.Class: {{params}}'")
        ((estimator, params),) = step.items()
        steps.append((str(estimator), dict(params or {})))
    if not steps:
        raise ContractError(f"model {name!r}: the pipeline is empty")
    features = tuple(doc.get("features") or sorted(feature_names))
    unknown = [f for f in features if f not in feature_names]
    if unknown:
        raise ContractError(f"model {name!r}: features {unknown} are not declared in the contract")
    return ModelSpec(name, tuple(steps), features)

"""The JSON Schema of a stream contract, generated from the tables its parsers check keys with.

``eddy.contracts.stream`` (``CONTRACT_FIELDS`` and the feature, label, pii and model tables),
``eddy.contracts.monitoring`` and ``eddy.contracts.retraining`` each declare what every key of their section
may hold (``eddy.contracts.shapes``); :func:`contract_schema` assembles those tables, so the schema and the
parsers cannot list different keys, enums or types. ``schemas/contract.schema.json`` is its output as
``eddy streams schema`` prints it (a test keeps the file equal to it), for editors and CI.

The schema checks a contract's shape: keys, types, enums, bounds and durations. What needs more than one key
or another file (a feature that is not a field of the event schema, ``min`` above ``max``, a segment that is
not a feature, a quality metric that does not fit the task) is for the parser: :func:`validate_contract_file`,
what ``eddy streams validate`` runs, applies the schema first and then the parser.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from eddy.contracts.durations import ContractError
from eddy.contracts.shapes import section
from eddy.contracts.stream import CONTRACT_FIELDS, REQUIRED, SANDBOX_REQUIRED, StreamContract, load_contract

DRAFT = "http://json-schema.org/draft-07/schema#"
# Where the published copy lives in the repository (and in the wheel, as eddy/_schemas/contract.schema.json).
SCHEMA_FILE_NAME = "contract.schema.json"


class ContractSchemaError(ContractError):
    """A contract that does not match the contract schema; ``problems`` lists every mismatch, one line each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


def contract_schema() -> dict[str, Any]:
    """The JSON Schema (draft-07, what editors' YAML plugins read) of a stream contract file.

    >>> schema = contract_schema()
    >>> schema["properties"]["label"]["properties"]["task"]
    {'enum': ['binary', 'multiclass', 'regression']}
    >>> schema["else"]["required"]
    ['stream', 'event_schema', 'features', 'models']
    """
    contract = section(CONTRACT_FIELDS, "", nullable=False)
    del contract["description"]
    return {
        "$schema": DRAFT,
        "title": "eddy stream contract",
        "description": (
            "A stream's data contract (schemas/streams/*.yaml): its event schema, features, label, models, "
            "monitoring and retraining. Generated from eddy.contracts by `eddy streams schema`; do not edit. "
            "`eddy streams validate FILE` checks this schema, then what needs more than one key."
        ),
        **contract,
        # A sandbox copies its parent's contract, so it needs only the two names.
        "if": {"required": ["sandbox_of"]},
        "then": {"required": list(SANDBOX_REQUIRED)},
        "else": {"required": list(REQUIRED)},
    }


def schema_text() -> str:
    """:func:`contract_schema` as the published file holds it."""
    return json.dumps(contract_schema(), indent=2, sort_keys=False) + "\n"


def schema_problems(doc: Any, schema: Mapping[str, Any] | None = None) -> list[str]:
    """Where ``doc`` does not match ``schema`` (default: :func:`contract_schema`), as ``key.path: message`` lines.

    Sorted by place, so a file gets the same lines in the same order from every run and from any validator
    of the published schema that formats them the same way.

    >>> schema_problems({"stream": "s", "event_schema": "s.avsc", "features": {"x": {}}, "models": [{"name": "m",
    ...     "pipeline": [{"linear_model.LogisticRegression": {}}]}], "label": {"task": "ranking"}})
    ["label.task: 'ranking' is not one of ['binary', 'multiclass', 'regression']"]
    """
    validator = jsonschema.Draft7Validator(contract_schema() if schema is None else schema)
    found = [_deepest(error) for error in validator.iter_errors(doc)]
    return sorted({f"{_place(error)}: {error.message}" for error in found})


def validate_contract_file(path: Path) -> StreamContract:
    """Check one contract file as ``eddy streams validate`` does: the contract schema first, then the parser.

    Raises
    ------
    ContractSchemaError
        For a file that does not match the schema, with every mismatch.
    ContractError
        For a file that cannot be read, or that the parser refuses.
    """
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ContractError(f"{path}: cannot read contract: {exc}") from exc
    problems = schema_problems(doc)
    if problems:
        raise ContractSchemaError(path, problems)
    return load_contract(path)


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For an ``anyOf`` that failed, the reason of the branch that came closest, rather than "not valid under any"."""
    while error.context:
        error = jsonschema.exceptions.best_match(error.context)
    return error


def _place(error: jsonschema.ValidationError) -> str:
    """``models[0].pipeline``: the key path of an error; ``contract`` for the whole document."""
    place = ""
    for part in error.absolute_path:
        place += f"[{part}]" if isinstance(part, int) else f".{part}" if place else str(part)
    return place or "contract"

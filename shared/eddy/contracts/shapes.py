"""What each key of a stream contract may hold, as JSON Schema fragments: the tables the parsers check keys with.

Every section parser (``stream``, ``monitoring``, ``retraining``) declares its keys in one table of these
fragments and refuses any key its table lacks; ``eddy.contracts.contract_schema`` assembles the same tables
into the contract's JSON Schema (``schemas/contract.schema.json``). So the keys cannot differ, and the enums
are the parsers' own constants. Bounds are written twice, here and in the parsers' checks:
``tests/unit/contracts/test_contract_schema.py`` tries every bound, enum and unknown key of the schema on the
parser, so they cannot drift apart either.

>>> section({"window": count(10)}, "Windows.")["properties"]["window"]
{'type': 'integer', 'minimum': 10}
>>> one_of(["b", "a"])
{'enum': ['a', 'b']}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Fragment = dict[str, Any]
Fields = Mapping[str, Fragment]

# What parse_duration_ms reads besides a whole number of milliseconds.
DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$"


def count(least: int) -> Fragment:
    """A whole number of at least ``least`` (YAML's true and false are not numbers here)."""
    return {"type": "integer", "minimum": least}


def number(
    low: float | None = None, high: float | None = None, *, above: float | None = None, below: float | None = None
) -> Fragment:
    """A number within ``[low, high]``, and strictly above ``above`` and below ``below`` where given.

    >>> number(0, 1)
    {'type': 'number', 'minimum': 0, 'maximum': 1}
    """
    fragment: Fragment = {"type": "number"}
    for key, value in (("minimum", low), ("maximum", high), ("exclusiveMinimum", above), ("exclusiveMaximum", below)):
        if value is not None:
            fragment[key] = value
    return fragment


def one_of(values: Iterable[str]) -> Fragment:
    """One of ``values`` (sorted, as the parsers' messages list them)."""
    return {"enum": sorted(values)}


def text(**constraints: Any) -> Fragment:
    """A string, with JSON Schema's string constraints (``minLength``, ``pattern``, ``format``)."""
    return {"type": "string", **constraints}


def flag() -> Fragment:
    return {"type": "boolean"}


def names() -> Fragment:
    """A list of names (features, fields, models)."""
    return {"type": "array", "items": {"type": "string"}}


def duration() -> Fragment:
    """``500ms``, ``30s``, ``15m``, ``2h``, ``7d`` or a whole number of milliseconds."""
    # One fragment, not anyOf: `pattern` constrains strings only and `minimum` numbers only, so a bad duration
    # gets the message of what it is ("does not match ..."), not of the branch it is not.
    return {
        "type": ["integer", "string"],
        "minimum": 0,
        "pattern": DURATION_PATTERN,
        "description": "a duration: 500ms, 30s, 15m, 2h, 7d, or milliseconds",
    }


def section(fields: Fields, description: str, *, nullable: bool = True, required: Iterable[str] = ()) -> Fragment:
    """A mapping of exactly ``fields`` (an empty YAML key, null, means every default where ``nullable``)."""
    fragment: Fragment = {
        "type": ["object", "null"] if nullable else "object",
        "description": description,
        "properties": dict(fields),
        "additionalProperties": False,
    }
    if required:
        fragment["required"] = list(required)
    return fragment


def unknown_keys(doc: Mapping[Any, Any], fields: Iterable[str], where: str) -> str | None:
    """The parsers' message for keys of ``doc`` that ``fields`` (a table, or its keys) does not list, or None.

    >>> unknown_keys({"window": 5, "size": 1}, {"window": count(10)}, "monitoring.data_drift")
    'monitoring.data_drift: unknown key(s) size; known: window'
    """
    known = set(fields)
    unknown = sorted(map(str, set(doc) - known))
    if not unknown:
        return None
    return f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"

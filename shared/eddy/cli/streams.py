"""``eddy streams validate FILE`` and ``eddy streams schema``: a contract checked as editors and CI check it.

``validate`` applies the contract's JSON Schema first (every mismatch, one line each, with its key path), then
the parser's checks that need more than one key or the event schema; ``schema`` prints that JSON Schema,
the content of ``schemas/contract.schema.json`` (``eddy.contracts.contract_schema``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from eddy.cli.common import EXIT_FAILURE, EXIT_OK, UsageError
from eddy.contracts.contract_schema import ContractSchemaError, schema_text, validate_contract_file


def validate(file: str | None) -> int:
    """Check the contract ``file``; print what is wrong (stderr) or one line saying it is valid (stdout)."""
    if not file:
        raise UsageError("eddy streams validate FILE: name the contract file to check")
    try:
        contract = validate_contract_file(Path(file))
    except ContractSchemaError as exc:
        for problem in exc.problems:
            print(f"eddy: error: {file}: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{file}: stream {contract.name!r} is valid ({len(contract.features)} features, {contract.task})")
    return EXIT_OK


def print_schema(name: str | None) -> int:
    """Print the contract JSON Schema (``eddy streams schema > schemas/contract.schema.json`` refreshes it)."""
    if name:
        raise UsageError(f"eddy streams schema takes no argument, not {name!r}")
    sys.stdout.write(schema_text())
    return EXIT_OK

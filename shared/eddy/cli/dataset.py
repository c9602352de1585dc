"""``eddy dataset export S``: a stream's labeled examples as a versioned dataset (see shared/eddy/history/dataset.py).

Kafka and the schema registry are found like every other ``eddy`` command finds
them: the environment, else the running ``eddy up`` stack, else the defaults.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from eddy.cli.common import CliError, UsageError, resolve_settings
from eddy.history.dataset import DATA_NAMES, MANIFEST_NAME, Bounds, DatasetError, Selection, export_dataset


def cmd_export(args: argparse.Namespace) -> int:
    from eddy.avro.serde import SerdeRegistry, registry_client
    from eddy.contracts.stream import load_contracts

    # Bad arguments fail before anything is read, as usage errors (exit code 2).
    try:
        bounds = Bounds.parse(args.start, args.end)
        selection = Selection.of(args.model, args.all_models)
    except DatasetError as exc:
        raise UsageError(str(exc)) from exc
    settings = resolve_settings()
    contracts = load_contracts(settings.contracts_dir)
    contract = contracts.get(args.stream)
    if contract is None:
        known = ", ".join(sorted(contracts)) or "none"
        raise DatasetError(f"unknown stream {args.stream!r} (known: {known}; contracts in {settings.contracts_dir})")
    serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
    manifest = export_dataset(
        settings,
        serdes,
        args.stream,
        Path(args.output),
        bounds=bounds,
        selection=selection,
        fmt=args.format,
        feature_order=[f.name for f in contract.features],
        feature_types={f.name: f.type for f in contract.features},
        timeout_s=args.timeout,
    )
    out = Path(args.output)
    print(f"exported {manifest['rows']} rows of {manifest['topic']} to {out / manifest['file']['name']}")
    print(f"  manifest  {out / MANIFEST_NAME}")
    print(f"  sha256    {manifest['file']['sha256']}")
    for p in manifest["partitions"]:
        print(f"  partition {p['partition']}: offsets {p['first_offset']}..{p['last_offset']} ({p['records']} read)")
    if manifest["undecodable"]["count"]:
        print(
            f"eddy: warning: {manifest['undecodable']['count']} records did not decode (see the manifest)",
            file=sys.stderr,
        )
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``dataset export`` to eddy's subcommands."""

    def run(args: argparse.Namespace) -> int:
        try:
            return cmd_export(args)
        except DatasetError as exc:
            raise CliError(str(exc)) from exc

    dataset = sub.add_parser("dataset", help="export a stream's labeled examples as a versioned dataset")
    actions = dataset.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "export",
        help="write S.labeled between two bounds to DIR/data.parquet with DIR/manifest.json",
        description="Bounds: an integer below 10**11 is an offset (in every partition), a larger one epoch "
        "milliseconds, anything else ISO 8601 (naive means UTC). --from is inclusive, --until exclusive; a time "
        "bound is applied to each record's own timestamp (its event time).",
    )
    p.add_argument("stream")
    p.add_argument("--from", dest="start", metavar="X", help="first offset or time (inclusive)")
    p.add_argument("--until", dest="end", metavar="Y", help="offset or time to stop before (exclusive)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="directory for the data file and manifest")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="NAME@N", help="every example of this model version, not the served ones")
    which.add_argument("--all-models", action="store_true", help="every version's example of each event")
    p.add_argument("--format", choices=sorted(DATA_NAMES), default="parquet", help="file format (default parquet)")
    p.add_argument("--timeout", type=float, default=120.0, help="give up reading after SEC seconds (default 120)")
    p.set_defaults(func=run)

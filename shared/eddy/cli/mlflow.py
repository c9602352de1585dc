"""``eddy mlflow sync|export``: backtests and model versions mirrored to MLflow, a version as a pyfunc model.

Needs the extra: ``pip install 'eddy[mlflow]'``. The work is ``eddy.integrations.mlflow``'s, imported only when
one of these commands runs. The registry is found as ``eddy models`` finds it (``--url``,
``EDDY_MODEL_REGISTRY_URL``, the running stack); the tracking URI is ``--tracking-uri``, else MLflow's own
``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from eddy.cli.common import CliError, UsageError, resolve_settings
from eddy.cli.models import registry_url
from eddy.cli.options import positive_int
from eddy.core.settings import Settings


def _integration() -> Any:
    try:
        from eddy.integrations import mlflow as integration
    except ModuleNotFoundError as exc:
        raise CliError(str(exc)) from exc
    return integration


def _tracking_uri(args: argparse.Namespace) -> str:
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        raise UsageError("name the MLflow tracking URI: --tracking-uri URI (or MLFLOW_TRACKING_URI)")
    return str(uri)


def cmd_sync(args: argparse.Namespace) -> int:
    integration = _integration()
    from eddy.integrations.mlflow_retry import MirrorUnavailable, Retry
    from eddy.integrations.mlflow_source import RegistrySource, SourceError

    settings = resolve_settings()
    contract = _contract(settings, args.stream)
    mirror = integration.MlflowMirror(integration.connect(_tracking_uri(args)), Retry(attempts=args.attempts))
    if args.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    source = RegistrySource(registry_url(args.url, settings))
    try:
        while True:
            try:
                report = _sync_once(integration, args, settings, contract, source, mirror)
                print(report.line(args.stream), flush=True)
            except (MirrorUnavailable, SourceError) as exc:
                if args.every is None:
                    raise CliError(str(exc)) from exc
                # A sidecar keeps going: the failures are counted, the next round retries.
                print(f"eddy mlflow: {exc}", file=sys.stderr, flush=True)
            if args.every is None:
                return 0
            time.sleep(args.every)
    finally:
        source.close()


def _sync_once(
    integration: Any, args: argparse.Namespace, settings: Settings, contract: Any, source: Any, mirror: Any
) -> Any:
    """One sync of the stream; the versions' pyfunc models from the registry's snapshots unless ``--no-models``."""
    from eddy.integrations.mlflow_source import registry_snapshots

    if args.no_models:
        return integration.sync(args.stream, source, mirror)
    snapshots = registry_snapshots(settings, args.stream)

    def save_model(version: dict[str, Any], path: Path) -> None:
        snapshot = snapshots[f"{version['name']}@{version['version']}"]
        integration.export_pyfunc(snapshot, contract, settings.keyring(), path)

    return integration.sync(args.stream, source, mirror, save_model, lambda key: key in snapshots)


def _contract(settings: Settings, stream: str) -> Any:
    from eddy.contracts.stream import load_contracts

    contracts = load_contracts(settings.contracts_dir)
    if stream not in contracts:
        raise UsageError(f"unknown stream {stream!r} (known: {', '.join(sorted(contracts))})")
    return contracts[stream]


def cmd_export(args: argparse.Namespace) -> int:
    integration = _integration()
    from eddy.integrations.mlflow_source import registry_snapshots
    from eddy.ml.models import SnapshotError

    settings = resolve_settings()
    contract = _contract(settings, args.stream)
    out = Path(args.out)
    if out.exists():
        raise UsageError(f"--out {out}: already exists (MLflow writes a model into a new directory)")
    snapshot = registry_snapshots(settings, args.stream).get(args.version)
    if snapshot is None:
        raise CliError(f"{args.version}: the registry's snapshot of it is not on {args.stream}.models")
    try:
        integration.export_pyfunc(snapshot, contract, settings.keyring(), out)
    except SnapshotError as exc:
        raise CliError(f"{args.version} not exported: {exc}") from exc
    print(f"{args.stream} {args.version}: MLflow pyfunc model in {out} (loads with eddy's signing keyring)")
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``mlflow sync|export`` to eddy's subcommands."""
    p = sub.add_parser("mlflow", help="mirror backtests and model versions to MLflow; export a pyfunc model")
    actions = p.add_subparsers(dest="mlflow_action", required=True)

    sync = actions.add_parser("sync", help="mirror a stream's backtests, versions and aliases (idempotent)")
    sync.add_argument("stream")
    sync.add_argument("--tracking-uri", help="MLflow tracking URI: http://host:5000, file:./mlruns, ...")
    sync.add_argument("--url", help="the model registry (default: as `eddy models`)")
    sync.add_argument("--no-models", action="store_true", help="versions without their pyfunc model (no Kafka read)")
    sync.add_argument("--attempts", type=positive_int, default=5, help="tries of each step before giving up")
    sync.add_argument("--every", type=positive_int, help="keep syncing, this many seconds apart (a sidecar)")
    sync.add_argument("--metrics-port", type=int, help="serve Prometheus metrics here (with --every)")
    sync.set_defaults(func=cmd_sync)

    export = actions.add_parser("export", help="write one version as an MLflow pyfunc model")
    export.add_argument("stream")
    export.add_argument("version", help="a version like default@2")
    export.add_argument("--out", required=True, help="a new directory for the model")
    export.set_defaults(func=cmd_export)

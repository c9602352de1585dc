"""``eddy backtest``: how models would have done on a stream's history, through the production model code.

Reads ``S.validated`` (or ``S.events``) and ``S.feedback`` from Kafka, runs every
``--model`` on the same event-time ordered sequence (shared/eddy/history/backtest/engine.py),
and writes the per-label results (Parquet or CSV), a self-contained HTML report
and an experiment in the model registry.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from eddy.avro.serde import SerdeRegistry
from eddy.cli.common import EXIT_USAGE, CliError, resolve_settings
from eddy.contracts.durations import ContractError, parse_duration_ms
from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.core.settings import Settings
from eddy.history.backtest.engine import OBSERVED, BacktestModel, run_backtest
from eddy.history.backtest.source import History, load_history
from eddy.history.bounds import Bound, BoundError, check_range, parse_bound
from eddy.history.progress import ProgressLine
from eddy.ml.models import SnapshotError, load_snapshot_estimator, spec_from_json
from eddy.ml.roles import VersionKey


class BacktestError(CliError):
    """A backtest that cannot run as asked: one line for the CLI."""


class BacktestUsageError(BacktestError):
    """An option given wrong (eddy's exit code 2, like argparse's)."""

    exit_code = EXIT_USAGE


def parse_delay(text: str) -> str | int:
    """``observed`` (each label when it really arrived), or a fixed delay after the event: ms, ``30s``, ``2h``.

    >>> parse_delay("observed"), parse_delay("0"), parse_delay("250"), parse_delay("2s")
    ('observed', 0, 250, 2000)
    """
    if text == OBSERVED:
        return OBSERVED
    if text.isdigit():
        return int(text)  # milliseconds
    try:
        return parse_duration_ms(text, "--label-delay")
    except ContractError as exc:
        raise BacktestUsageError(f"--label-delay {text!r}: 'observed', 0 or a duration like 30s or 2h ({exc})") from exc


def resolve_model(text: str, contract: StreamContract, settings: Settings, serdes: SerdeRegistry) -> BacktestModel:
    """One ``--model``: a contract model (fresh), ``NAME@N`` (the registry's version, warm), or a spec file."""
    path = Path(text)
    if text.endswith((".json", ".yaml", ".yml")):
        if not path.exists():
            raise BacktestError(f"--model {text}: no such spec file")
        import yaml

        doc = yaml.safe_load(path.read_text())
        try:
            spec = spec_from_json(json.dumps(doc))
        except (KeyError, TypeError, ValueError) as exc:
            raise BacktestError(f"--model {text}: a spec needs name, features and pipeline ({exc})") from exc
        return BacktestModel.fresh(spec, f"spec:{spec.name}")
    if "@" in text:
        try:
            key = VersionKey.parse(text)
        except ValueError as exc:
            raise BacktestUsageError(f"--model {text}: {exc}") from exc
        spec, estimator = registered_version(settings, serdes, contract, key)
        return BacktestModel.warm(spec, estimator, str(key))
    names = [m.name for m in contract.models]
    if text not in names:
        raise BacktestUsageError(
            f"--model {text}: not a model of {contract.name} ({', '.join(names)}), a version (name@N) or a spec file"
        )
    return BacktestModel.fresh(contract.model(text), f"spec:{text}")


def registered_version(
    settings: Settings, serdes: SerdeRegistry, contract: StreamContract, key: VersionKey
) -> tuple[ModelSpec, Any]:
    """The model a version was registered with, as the registry published it on ``S.models``."""
    from eddy.core.topics import StreamTopics
    from eddy.history.reader import read_to_end

    topic = StreamTopics(contract.name).models
    found: dict[str, Any] | None = None
    for batch in read_to_end(settings, [topic]):
        for value in serdes.for_topic(topic).decode_many([m.value() for m in batch]):
            # The registry's snapshots carry no source offsets; learning's later ones would leak the future.
            if not isinstance(value, dict) or value["source_offsets"]:
                continue
            if (value["model_name"], value["model_version"]) == (key.name, key.version):
                found = value
    if found is None:
        raise BacktestError(f"--model {key}: the registry's snapshot of it is not on {topic}")
    try:
        return spec_from_json(found["spec"]), load_snapshot_estimator(found, settings.keyring())
    except SnapshotError as exc:
        raise BacktestError(f"--model {key}: {exc}") from exc


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Parquet or CSV by the file's suffix; the same table always gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".parquet":
        table.to_parquet(tmp, index=False, compression="zstd")
    elif path.suffix == ".csv":
        table.to_csv(tmp, index=False, lineterminator="\n")
    else:
        raise BacktestUsageError(f"--output {path}: write .parquet or .csv")
    tmp.replace(path)


def cmd_backtest(args: argparse.Namespace) -> int:
    from eddy.avro.serde import registry_client
    from eddy.contracts.stream import load_contracts

    settings = resolve_settings()
    contracts = load_contracts(settings.contracts_dir)
    contract = contracts.get(args.stream)
    if contract is None:
        raise BacktestError(f"unknown stream {args.stream!r} (known: {', '.join(sorted(contracts))})")
    delay = parse_delay(args.label_delay)
    start, until = _bound(args.start, "--from"), _bound(args.until, "--until")
    serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
    models = [resolve_model(m, contract, settings, serdes) for m in args.model or [contract.champion.name]]
    names = [m.name for m in models]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        # Rows of the result table are told apart by model name: the same model twice would be one mixed series.
        raise BacktestUsageError(f"--model {', '.join(twice)} given more than once: compare each model once")
    began = time.monotonic()
    progress(f"reading {contract.name}.{args.source} and {contract.name}.feedback ...")
    bar = ProgressLine(sys.stderr, "eddy backtest")

    def reading(read: int, planned: int) -> None:
        bar.show(read / planned if planned else 0.0, f"read {read:,} of {planned:,} records")

    def running(done: int, planned: int) -> None:
        bar.show(done / planned if planned else 1.0, f"{done:,} of {planned:,} steps")

    try:
        history = load_history(settings, contract, serdes, args.source, start, until, reading)
        bar.close()
        read_s = time.monotonic() - began
        events, labels = len(history.events), len(history.labels)
        progress(f"read {events:,} events and {labels:,} labels in {read_s:.1f} s; running ...")
        result = run_backtest(contract, history.events, history.labels, models, delay, on_progress=running)
    finally:
        bar.close()
    elapsed = time.monotonic() - began
    summary = {
        **result.summary,
        "stream": contract.name,
        "data": {**result.summary["data"], **_data(history, args, start, until)},
        "created_by": "eddy backtest",
    }
    if args.output:
        write_table(result.table, Path(args.output))
    if args.report:
        from eddy.history.backtest.report import write_report

        write_report(args.report, result.table, summary)
    if not args.no_record:
        summary["experiment_id"] = _record(settings, summary, args)
    print_summary(summary, elapsed, len(history.events))
    return 0


def _bound(text: str | None, option: str) -> Bound | None:
    if text is None:
        return None
    try:
        return parse_bound(text, option)
    except BoundError as exc:
        raise BacktestUsageError(str(exc)) from exc


def _data(history: History, args: argparse.Namespace, start: Bound | None, until: Bound | None) -> dict[str, Any]:
    try:
        check_range(start, until)
    except BoundError as exc:
        raise BacktestUsageError(str(exc)) from exc
    return {
        "source": args.source,
        "from": str(start) if start else None,
        "until": str(until) if until else None,
        "offsets": history.offsets,
        "schema_ids": history.schema_ids,
        "skipped": history.skipped,
    }


def _record(settings: Settings, summary: dict[str, Any], args: argparse.Namespace) -> str | None:
    try:
        from eddy.cli.experiments import record_experiment
    except ImportError:  # pragma: no cover - only while the experiments CLI is missing
        return None
    doc = {
        "stream": summary["stream"],
        "title": args.title or f"backtest of {', '.join(m['model'] for m in summary['models'])}",
        "created_by": "eddy backtest",
        "models": summary["models"],
        "data": summary["data"],
        "metrics": {m["model"]: m["metrics"] for m in summary["models"]},
        "label_delay": summary["label_delay"],
        "report": str(Path(args.report).resolve()) if args.report else None,
        "output": str(Path(args.output).resolve()) if args.output else None,
    }
    return record_experiment(settings, doc)


def progress(line: str) -> None:
    print(f"eddy backtest: {line}", file=sys.stderr, flush=True)


def print_summary(summary: dict[str, Any], elapsed_s: float, events: int) -> None:
    metric = summary["metric"]
    data = summary["data"]
    delay = summary["label_delay"]
    print(f"stream {summary['stream']}: {data['events']:,} events, {data['labels']:,} labels, label delay {delay}")
    print(f"{'MODEL':<28} {'START':<24} {'LABELS':>9} {metric.upper():>10}  OTHER")
    for m in summary["models"]:
        others = "  ".join(f"{k} {v:.4f}" for k, v in m["metrics"].items() if k != metric and v is not None)
        print(f"{m['model']:<28} {m['start']:<24} {m['labels']:>9,} {m['final_metric']:>10.4f}  {others}")
    rate = events / elapsed_s if elapsed_s > 0 else 0.0
    print(
        f"{elapsed_s:.1f} s ({rate:,.0f} events/s)"
        + (f"; experiment {summary.get('experiment_id')}" if summary.get("experiment_id") else "")
    )


def add_parsers(sub: Any) -> None:
    """Add ``backtest`` to eddy's subcommands."""

    p = sub.add_parser("backtest", help="replay a stream's history through models; results, report, experiment")
    p.add_argument("stream")
    p.add_argument(
        "--model",
        action="append",
        help="a contract model (fresh), NAME@N (the registry's version, warm start) or a spec file; repeatable "
        "(default: the contract's champion)",
    )
    p.add_argument("--from", dest="start", help="offset, epoch ms or ISO 8601 (times are event times); inclusive")
    p.add_argument("--until", help="same forms as --from; exclusive")
    p.add_argument("--source", choices=["validated", "events"], default="validated", help="where the events come from")
    p.add_argument("--label-delay", default=OBSERVED, help="observed (default), 0, or a duration such as 30s")
    p.add_argument("--report", help="write a self-contained HTML report here")
    p.add_argument("--output", help="write the per-label results here (.parquet or .csv)")
    p.add_argument("--title", help="the experiment's title in the registry")
    p.add_argument("--no-record", action="store_true", help="do not record an experiment in the model registry")
    p.set_defaults(func=cmd_backtest)

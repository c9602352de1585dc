"""``eddy backtest``: how models would have done on a stream's history, through the production model code.

Reads ``S.validated`` (or ``S.events``) and ``S.feedback`` from Kafka, runs every
``--model`` on the same event-time ordered sequence (shared/eddy/history/backtest/engine.py),
and writes the per-label results (Parquet or CSV), a self-contained HTML report
and an experiment in the model registry.

With ``--gate`` (or ``--gate-file``) it is a model CI check: a ``--candidate`` model is run beside the
``--champion`` on the same history, every gate is judged on their metrics
(shared/eddy/history/backtest/gate.py), a JUnit XML file and a JSON summary say how each came out
(``--junit``, ``--summary-json``), and the exit code is 0 when every gate passed, 3
(``EXIT_GATE_FAILED``) when one failed, 1 when one could not be judged (no labels answered).
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
from eddy.cli.common import EXIT_FAILURE, EXIT_GATE_FAILED, EXIT_OK, EXIT_USAGE, CliError, resolve_settings
from eddy.contracts.durations import ContractError, parse_duration_ms
from eddy.contracts.stream import ModelSpec, StreamContract
from eddy.core.settings import Settings
from eddy.history.backtest.engine import OBSERVED, BacktestModel, metric_names, run_backtest
from eddy.history.backtest.gate import SIDES, Gate, GateError, GateResult, evaluate_gates, overall
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
    """One ``--model``: a contract model (fresh), ``NAME@N`` (the registry's version, warm), a spec file,
    or ``CONTRACT.yaml#NAME``, a model of another contract file (fresh; such as the main branch's)."""
    path = Path(text)
    file, hash_sign, name = text.rpartition("#")
    if hash_sign and file.endswith((".yaml", ".yml")):
        return BacktestModel.fresh(contract_file_model(Path(file), name, contract), text)
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


def contract_file_model(path: Path, name: str, contract: StreamContract) -> ModelSpec:
    """Model ``name`` of the contract file at ``path``, whose features the stream's contract must have."""
    from eddy.contracts.stream import load_contract

    if not path.exists():
        raise BacktestError(f"--model {path}#{name}: no such contract file")
    other = load_contract(path)  # a ContractError is one line already, with the file's name
    names = [m.name for m in other.models]
    if name not in names:
        raise BacktestError(f"--model {path}#{name}: {path} has no model {name!r} ({', '.join(names)})")
    spec = other.model(name)
    missing = [f for f in spec.features if f not in {f.name for f in contract.features}]
    if missing:
        absent = ", ".join(missing)
        raise BacktestError(f"--model {path}#{name}: features {absent} are not in {contract.name}'s contract")
    return spec


def read_gates(args: argparse.Namespace, contract: StreamContract) -> list[Gate]:
    """Every ``--gate`` and the gates of each ``--gate-file``, checked against the stream's metrics."""
    from eddy.history.backtest.gate import load_gate_file, parse_gates

    try:
        gates = parse_gates(args.gate or [])
        for path in args.gate_file or []:
            gates += load_gate_file(path)
        for gate in gates:
            gate.check_metrics(metric_names(contract.task), contract.task)
    except GateError as exc:
        raise BacktestUsageError(str(exc)) from exc
    if not gates and (args.junit or args.summary_json):
        raise BacktestUsageError("--junit and --summary-json report gates: give --gate or --gate-file")
    return gates


def side_models(args: argparse.Namespace, gates: list[Gate], contract: StreamContract) -> dict[str, str]:
    """The model text of each side the command runs: ``--champion`` (default: the contract's champion, fresh,
    when a gate names it) and ``--candidate`` (needed when a gate names it)."""
    named = {side for gate in gates for side in gate.sides}
    sides: dict[str, str] = {}
    if args.champion or "champion" in named:
        sides["champion"] = args.champion or contract.champion.name
    if args.candidate:
        sides["candidate"] = args.candidate
    elif "candidate" in named:
        raise BacktestUsageError("a gate names the candidate: give --candidate MODEL (a spec file, name@N, ...)")
    if args.champion and args.candidate and args.champion == args.candidate:
        raise BacktestUsageError(f"--champion and --candidate are both {args.champion}: compare two models")
    return sides


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
    gates = read_gates(args, contract)
    sides = side_models(args, gates, contract)
    texts = [*sides.values(), *(m for m in args.model or [] if m not in sides.values())]
    serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
    models = [resolve_model(m, contract, settings, serdes) for m in texts or [contract.champion.name]]
    side_names = {side: models[i].name for i, side in enumerate(sides)}
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
    if not gates:
        return EXIT_OK
    return judge(gates, side_names, summary, args, elapsed)


def judge(
    gates: list[Gate], side_names: dict[str, str], summary: dict[str, Any], args: argparse.Namespace, elapsed: float
) -> int:
    """Judge the gates on the sides' metrics, print and write how they came out; the command's exit code."""
    from eddy.history.backtest.gate_report import junit_xml, summary_json, write_text

    entries = {m["model"]: m for m in summary["models"]}
    sides = {side: _side(entries[name]) for side, name in side_names.items()}
    results = evaluate_gates(gates, {side: _gated_metrics(s) for side, s in sides.items()})
    verdict = overall(results)
    code = {"passed": EXIT_OK, "failed": EXIT_GATE_FAILED, "error": EXIT_FAILURE}[verdict]
    print_gates(results, side_names)
    about = {
        "task": summary["task"],
        "metric": summary["metric"],
        "label_delay": summary["label_delay"],
        "data": summary["data"],
        "experiment_id": summary.get("experiment_id"),
        "exit_code": code,
        "created_by": "eddy backtest",
    }
    if args.junit:
        data = summary["data"]
        properties = {
            **{side: name for side, name in side_names.items()},
            **{k: about[k] for k in ("task", "label_delay")},
            **{f"data.{k}": data.get(k) for k in ("source", "from", "until", "events", "labels")},
            **({"experiment_id": about["experiment_id"]} if about["experiment_id"] else {}),
        }
        write_text(args.junit, junit_xml(summary["stream"], results, properties, elapsed))
    if args.summary_json:
        doc = summary_json(summary["stream"], results, sides, about)
        write_text(args.summary_json, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    if code != EXIT_OK:
        failed = sum(r.status != "passed" for r in results)
        progress(f"{failed} of {len(results)} gates did not pass" + (" (not judged: no labels)" if code == 1 else ""))
    return code


def _gated_metrics(side: dict[str, Any]) -> dict[str, Any]:
    """A side's metrics as the gates see them: none but ``labels`` for a model that answered no labels.

    Some metrics read 0 on no data (river's ``Accuracy``, on the pure-Python engine), which a gate would judge
    as a worse model rather than an empty range.

    >>> _gated_metrics({"metrics": {"accuracy": 0.0, "f1": 0.0}, "labels": 0})
    {'accuracy': None, 'f1': None, 'labels': 0}
    """
    metrics = side["metrics"] if side["labels"] else dict.fromkeys(side["metrics"])
    return {**metrics, "labels": side["labels"]}


def _side(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": entry["model"],
        "start": entry["start"],
        "labels": entry["labels"],
        "metrics": entry["metrics"],
        "spec": json.loads(entry["spec"]),
    }


def print_gates(results: list[GateResult], side_names: dict[str, str]) -> None:
    passed = sum(r.status == "passed" for r in results)
    named = ", ".join(f"{side} {name}" for side, name in side_names.items())
    print(f"gates: {passed} of {len(results)} passed ({named})")
    for r in results:
        mark = {"passed": "PASS", "failed": "FAIL", "error": "ERROR"}[r.status]
        shown = "" if r.gate.name == r.gate.expression else f"{r.gate.name}: "
        print(f"  {mark:<5} {shown}{r.message}")


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
    sides = " or ".join(SIDES)
    p.add_argument(
        "--champion",
        help="the model a gate calls champion, in any --model form or CONTRACT.yaml#NAME (default: the contract's "
        "champion, fresh)",
    )
    p.add_argument("--candidate", help="the model a gate calls candidate, in the same forms as --champion")
    p.add_argument(
        "--gate",
        action="append",
        metavar="EXPR",
        help=f"a check on the result, such as 'candidate.accuracy >= champion.accuracy - 0.005' (a side is {sides}); "
        "repeatable; exit code 3 when one fails",
    )
    p.add_argument("--gate-file", action="append", metavar="FILE", help="a YAML file of gates (a list, or gates:)")
    p.add_argument("--junit", metavar="FILE", help="write the gates' results here as JUnit XML (one test case each)")
    p.add_argument("--summary-json", metavar="FILE", help="write the gates' results and each side's metrics as JSON")
    p.set_defaults(func=cmd_backtest)

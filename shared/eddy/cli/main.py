"""The ``eddy`` command line.

Every failure ends with one clear line on stderr, never a traceback, and an exit code:
0 done, 1 the command ran and failed (broker down, unknown stream or topic, a
refused request), 2 the command line is wrong (argparse's errors and eddy's own
option checks, :mod:`eddy.cli.options`), 3 a gate of ``eddy backtest --gate`` failed.
"""

from __future__ import annotations

import argparse
import base64
import importlib.metadata
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx

from eddy.cli import backtest as cli_backtest
from eddy.cli import dataset as cli_dataset
from eddy.cli import experiments as cli_experiments
from eddy.cli import kafka as cli_kafka
from eddy.cli import keys as cli_keys
from eddy.cli import mlflow as cli_mlflow
from eddy.cli import models as cli_models
from eddy.cli import replay as cli_replay
from eddy.cli import streams as cli_streams
from eddy.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    CliError,
    UsageError,
    cli_log_level,
    cli_settings,
    resolve_settings,
)
from eddy.cli.options import non_negative_int, non_negative_number, positive_int, positive_number
from eddy.contracts.durations import ContractError
from eddy.contracts.stream import StreamContract, load_contracts
from eddy.core.envconfig import explicitly_set
from eddy.core.settings import Settings, redact_url, settings_table
from eddy.core.topics import StreamTopics
from eddy.runtime.auth import client_headers
from eddy.services.monitoring.estimation import MIN_CALIBRATION


def _contracts(settings: Settings) -> dict[str, StreamContract]:
    return load_contracts(settings.contracts_dir)


def _contract(settings: Settings, stream: str) -> StreamContract:
    contracts = _contracts(settings)
    if stream not in contracts:
        known = ", ".join(sorted(contracts)) or "none"
        raise CliError(f"unknown stream {stream!r} (known: {known}; contracts are read from {settings.contracts_dir})")
    return contracts[stream]


def _check_kafka(settings: Settings) -> None:
    from confluent_kafka import KafkaException

    from eddy.kafka.client import admin_client

    try:
        admin_client(settings).list_topics(timeout=5)
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise CliError(f"cannot reach Kafka at {settings.bootstrap_servers} (is `eddy up` running?): {reason}") from exc


def _serdes(settings: Settings) -> Any:
    from eddy.avro.serde import SerdeRegistry, registry_client

    return SerdeRegistry(registry_client(settings), settings.schemas_dir, _contracts(settings))


# -- up / down / status ----------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from eddy.runtime.observability import setup_logging, stop_event_on_signals
    from eddy.stack.up import EmbeddedStack, StackError, pid_alive, read_stack

    setup_logging("eddy", cli_log_level("WARNING"), "text")
    if args.broker:
        os.environ["EDDY_EMBEDDED_BROKER"] = args.broker
    settings = Settings.from_env()
    running = (read_stack(settings.state_dir) or {}).get("supervisor_pid")
    if pid_alive(running):
        raise CliError(
            f"eddy is already running from {settings.state_dir} (pid {running}): `eddy status` shows it, "
            "`eddy down` stops it; or set EDDY_STATE_DIR to run another"
        )
    demo_args = ["--rate", str(args.rate), "--label-delay", str(args.label_delay), "--drift-at", str(args.drift_at)]
    stack = EmbeddedStack(settings, dict(os.environ), demo=args.demo, demo_args=demo_args)
    stop = stop_event_on_signals()
    try:
        stack.start()
        _print_started(stack)
        stack.run_until_stopped(stop)
    except StackError as exc:
        raise CliError(str(exc)) from exc
    finally:
        print("eddy: stopping ...", file=sys.stderr, flush=True)
        stack.stop()
    print("eddy: stopped", file=sys.stderr)
    return 0


def _print_started(stack: Any) -> None:
    lines = [
        "eddy is up",
        f"  bootstrap servers   {stack.settings.bootstrap_servers}",
        f"  schema registry     {redact_url(stack.settings.schema_registry_url)}",
    ]
    for child in stack.supervisor.children:
        if child.url:
            lines.append(f"  {child.name:<19} {child.url}  (/metrics, /healthz)")
    lines.append(f"  state and logs      {stack.state_dir}")
    if stack.demo:
        lines.append("  demo feed           running: try `eddy tail demo.predictions --max 10` in another terminal")
    lines.append("Ctrl-C or `eddy down` stops everything.")
    print("\n".join(lines), flush=True)


def cmd_down(args: argparse.Namespace) -> int:
    from eddy.stack.up import pid_alive, read_stack

    settings = Settings.from_env()
    stack = read_stack(settings.state_dir)
    pid = (stack or {}).get("supervisor_pid")
    if not pid or not pid_alive(pid):
        print(f"eddy is not running (no live stack in {settings.state_dir})")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        raise CliError(f"eddy (pid {pid}) did not stop within {args.timeout:.0f} s")
    print("eddy stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from eddy.stack.up import pid_alive, read_stack, service_health

    settings = Settings.from_env()
    stack = read_stack(settings.state_dir)
    if not stack or not pid_alive(stack.get("supervisor_pid")):
        if args.json:
            print(json.dumps({"running": False, "state_dir": str(settings.state_dir)}))
            return 1
        raise CliError(f"eddy is not running (no live stack in {settings.state_dir}); start it with `eddy up`")
    services = {}
    for name, info in stack["services"].items():
        services[name] = {**info, "health": service_health(info.get("url"))}
    boards = _monitoring(services.get("monitoring", {}).get("url"))
    doc = {
        "running": True,
        "bootstrap_servers": stack["bootstrap_servers"],
        "schema_registry_url": redact_url(stack["schema_registry_url"]),
        "state_dir": stack["state_dir"],
        "services": services,
        "models": _current_roles(settings, sorted(set(boards) | set(_stream_names(settings)))),
        "streams": boards,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"bootstrap servers  {doc['bootstrap_servers']}\nschema registry    {doc['schema_registry_url']}\n")
    print(f"{'SERVICE':<16} {'STATUS':<9} {'PID':>7} {'RESTARTS':>8} {'LAG':>7}  URL")
    for name, info in services.items():
        health = info["health"]
        lag = health.get("consumer_lag_total", "")
        print(
            f"{name:<16} {health.get('status', '?'):<9} {info.get('pid') or '-':>7} {info['restarts']:>8} "
            f"{lag:>7}  {info.get('url') or ''}"
        )
    for stream, roles in doc["models"].items():
        _print_board(stream, roles, doc["streams"].get(stream, {}))
    return 0


def _stream_names(settings: Settings) -> list[str]:
    return sorted(_loadable_contracts(settings))


def _loadable_contracts(settings: Settings) -> dict[str, StreamContract]:
    """The contracts, or none when they do not load (status reports the stack, not the contract files)."""
    try:
        return _contracts(settings)
    except ContractError:
        return {}


def _current_roles(settings: Settings, streams: list[str]) -> dict[str, dict[str, Any]]:
    """Each stream's champion and challenger now, from the model registry; with the answer's source.

    Without a registry to ask, the champion is the one each stream starts with (its contract's first
    model), and the entry says so: after a promotion that is no longer true.
    """
    url: str | None = None
    no_registry: str | None = None
    try:
        url = cli_models.registry_url(None, settings)
    except CliError as exc:
        no_registry = str(exc)
    roles = cli_models.live_roles(url, streams) if url else {}
    first = {name: c.champion.name for name, c in _loadable_contracts(settings).items()}
    for stream in streams:
        if "champion" in roles.get(stream, {}):
            continue
        roles[stream] = {
            "champion": f"{first[stream]}@1" if stream in first else None,
            "challenger": None,
            "source": "the contract (the first champion only; the model registry did not answer)",
            "error": roles.get(stream, {}).get("error") or no_registry,
        }
    return roles


def _monitoring(url: str | None) -> dict[str, Any]:
    """Each stream's dashboard document from the monitoring service ({} when it does not answer)."""
    if not url:
        return {}
    key = client_headers()  # the dashboard's API needs a viewer key when keys are configured
    try:
        names = httpx.get(f"{url}/api/streams", headers=key, timeout=3).json()["streams"]
        return {
            s: httpx.get(f"{url}/api/dashboard", params={"stream": s}, headers=key, timeout=3).json() for s in names
        }
    except (httpx.HTTPError, ValueError, KeyError):
        return {}


def _print_board(stream: str, roles: dict[str, Any], board: dict[str, Any]) -> None:
    """The current champion and challenger, each model's window metrics (and segments), then the open alerts."""
    print(f"\nstream {stream} ({board.get('task', '?')})")
    challenger = roles.get("challenger") or "-"
    canary = f" (canary {roles['canary']:g})" if roles.get("challenger") and roles.get("canary") is not None else ""
    print(f"  champion {roles.get('champion') or '?'}  challenger {challenger}{canary}  from {roles['source']}")
    if roles.get("error"):
        print(f"  ({roles['error']})")
    if not board:
        print("  monitoring has no dashboard for it yet")
        return
    models = board.get("models") or []
    if not models:
        print("  no labeled examples yet")
    for m in models:
        shown = "  ".join(f"{k} {v:.3f}" for k, v in m["metrics"].items() if v is not None)
        print(f"  {m['model']} v{m['version']} ({m['role']})  labeled {m['labeled']}  {shown}")
        if m.get("estimated"):
            print(f"      {estimate_line(m['estimated'])}")
        for segment, values in m.get("segments", {}).items():
            seg = "  ".join(f"{k} {v:.3f}" for k, v in values.items() if k != "labeled" and v is not None)
            print(f"      {segment:<12} labeled {values.get('labeled', 0)}  {seg}")
    if board.get("freshness"):
        print(f"  {freshness_line(board['freshness'])}")
    alerts = board.get("alerts") or []
    print(f"  open alerts: {len(alerts)}")
    for a in alerts:
        reading = f"{a['statistic']} {a['value']:.3f} (threshold {a['threshold']:g})"
        print(f"    {a['kind']} {a['subject']}: {reading}; {a['window']}")


def freshness_line(freshness: dict[str, Any]) -> str:
    """The champion's label freshness (the dashboard's ``freshness`` entry) as one line.

    >>> print(freshness_line({"model": "default", "version": 1, "lag_s": 0.4, "max_lag_s": 30.0, "status": "ok",
    ...     "label_to_learned_s": {"p50": 0.05, "p99": 0.2, "n": 900},
    ...     "label_to_served_s": {"p50": 0.6, "p99": 1.1, "n": 40}}))
    freshness default v1: label to learned p50 0.05s p99 0.20s, to served p50 0.60s p99 1.10s; lag 0.4s (max 30s, ok)
    >>> print(freshness_line({"model": "default", "version": 1, "lag_s": 0.0, "max_lag_s": None,
    ...     "status": "unwatched", "label_to_learned_s": {"p50": None, "p99": None, "n": 0},
    ...     "label_to_served_s": {"p50": None, "p99": None, "n": 0}}))
    freshness default v1: label to learned p50 - p99 -, to served p50 - p99 -; lag 0.0s (no max_lag: no alert)
    """

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    learned, served = freshness["label_to_learned_s"], freshness["label_to_served_s"]
    limit = freshness.get("max_lag_s")
    watched = "no max_lag: no alert" if limit is None else f"max {limit:g}s, {freshness['status']}"
    return (
        f"freshness {freshness['model']} v{freshness['version']}: "
        f"label to learned p50 {seconds(learned['p50'])} p99 {seconds(learned['p99'])}, "
        f"to served p50 {seconds(served['p50'])} p99 {seconds(served['p99'])}; "
        f"lag {freshness['lag_s']:.1f}s ({watched})"
    )


def estimate_line(estimated: dict[str, Any]) -> str:
    """A version's label-free estimate (its ``estimated`` entry on the dashboard) as one line.

    >>> band = {"value": 0.874, "low": 0.853, "high": 0.895, "n": 1000}
    >>> print(estimate_line({"current": {"accuracy": band}, "reference_accuracy": 0.9, "threshold": 0.05,
    ...                      "calibration": "isotonic", "calibration_labels": 2000}))
    estimated before labels: accuracy 0.874 (0.853-0.895)  reference 0.900, alert below 0.850  (isotonic, 2000 labels)
    >>> print(estimate_line({"current": None, "reference_accuracy": None, "calibration": "isotonic",
    ...                      "calibration_labels": 40}))
    estimated before labels: none yet (40 labels; the calibrator needs 100)
    """
    current = estimated.get("current")
    labels = estimated.get("calibration_labels", 0)
    if not current:
        return f"estimated before labels: none yet ({labels} labels; the calibrator needs {MIN_CALIBRATION})"
    shown = "  ".join(f"{k} {e['value']:.3f} ({e['low']:.3f}-{e['high']:.3f})" for k, e in current.items())
    reference = estimated.get("reference_accuracy")
    line = f"estimated before labels: {shown}"
    if reference is not None:
        line += f"  reference {reference:.3f}, alert below {reference - estimated.get('threshold', 0.0):.3f}"
    return line + f"  ({estimated.get('calibration')}, {labels} labels)"


# -- produce / feedback ----------------------------------------------------------------------------


def _read_records(path: str) -> list[tuple[int, Any, bytes]]:
    """(line number, record, original bytes) from JSON lines, a JSON array, or CSV (by extension)."""
    from eddy.contracts.records import BodyError, parse_body

    if path.endswith(".csv"):
        import pandas as pd

        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read CSV {path}: {exc}") from exc
        rows = frame.to_dict(orient="records")
        return [(i + 2, row, json.dumps(row, default=str).encode()) for i, row in enumerate(rows)]
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    lines = [line for line in data.splitlines() if line.strip()]
    try:
        records = parse_body(data)
    except BodyError as exc:
        raise CliError(f"{path}: {exc}") from exc
    if len(records) == len(lines):
        return [(i + 1, r, lines[i]) for i, r in enumerate(records)]
    return [(i + 1, r, json.dumps(r).encode()) for i, r in enumerate(records)]


def _produce_file(args: argparse.Namespace, kind: str) -> int:
    from eddy.contracts.records import INGESTED_AT_HEADER, RecordError, now_ms, to_event, to_feedback
    from eddy.kafka.client import ensure_topics, producer_config
    from eddy.kafka.producer import ConfirmedProducer
    from eddy.runtime.dlq import DeadLetter

    settings = resolve_settings()
    contract = _contract(settings, args.stream)
    records = _read_records(args.file)
    _check_kafka(settings)
    topics = StreamTopics(contract.name)
    # Against a broker that auto-creates topics, the first write must not pick the partition count.
    ensure_topics(settings, topics.all())
    topic = topics.events if kind == "events" else topics.feedback
    serde = _serdes(settings).for_topic(topic)
    producer = ConfirmedProducer(producer_config(settings))
    received = now_ms()
    sent, rejected = 0, []
    for line, record, raw in records:
        try:
            if kind == "events":
                value = to_event(record, contract, received, settings.pii_key.encode())
                key, ts = value[contract.id_field], value[contract.time_field]
            else:
                value = to_feedback(record, contract.task, received, contract.label_field)
                key, ts = value["event_id"], value["label_time_ms"]
            data = serde.encode(value)
        except (RecordError, ValueError) as exc:
            rejected.append((line, str(exc)))
            letter = DeadLetter(
                f"{args.file}", 0, line, None, raw, [], None, "cli", "rejected", "RecordError", str(exc)
            )
            producer.produce(topics.dlq, raw, None, letter.dlq_headers())
            continue
        producer.produce(topic, data, key.encode(), [(INGESTED_AT_HEADER, str(received).encode())], ts)
        sent += 1
    producer.confirm()
    print(f"produced {sent} records to {topic}")
    for line, message in rejected[:20]:
        print(f"  line {line}: rejected: {message}", file=sys.stderr)
    if rejected:
        more = " (first 20 shown)" if len(rejected) > 20 else ""
        print(f"{len(rejected)} records rejected and kept in {topics.dlq}{more}", file=sys.stderr)
        return 1
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    return _produce_file(args, "events")


def cmd_feedback(args: argparse.Namespace) -> int:
    return _produce_file(args, "feedback")


# -- tail -------------------------------------------------------------------------------------------


def cmd_tail(args: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from eddy.avro.serde import registry_client
    from eddy.kafka.client import consumer_config
    from eddy.runtime.dlq import read_dlq_headers

    settings = resolve_settings()
    _check_kafka(settings)
    consumer = Consumer(consumer_config(settings, f"eddy-tail-{uuid.uuid4().hex[:8]}"))
    metadata = consumer.list_topics(timeout=5)
    topic = metadata.topics.get(args.topic)
    if topic is None or topic.error is not None:
        known = ", ".join(sorted(t for t in metadata.topics if not t.startswith("__")))
        raise CliError(f"no topic {args.topic!r} (topics: {known})")
    start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
    consumer.assign([TopicPartition(args.topic, p, start) for p in sorted(topic.partitions)])
    deserializer = AvroDeserializer(registry_client(settings))
    ctx = SerializationContext(args.topic, MessageField.VALUE)
    printed = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while (args.max is None or printed < args.max) and (deadline is None or time.monotonic() < deadline):
            for msg in consumer.consume(tail_batch(args.max, printed), 0.2):
                if msg.error():
                    continue
                raw = msg.value() or b""
                if raw[:1] == b"\x00" and len(raw) > 5:
                    try:
                        value: Any = deserializer(raw, ctx)
                    except Exception as exc:
                        value = {"undecodable": f"{type(exc).__name__}: {exc}", "bytes": _show_bytes(raw)}
                else:
                    value = {"bytes": _show_bytes(raw), "dlq": read_dlq_headers(msg.headers())}
                if args.meta:
                    key = msg.key()
                    value = {
                        "topic": msg.topic(),
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "timestamp_ms": msg.timestamp()[1],
                        "key": key.decode("utf-8", "replace") if key else None,
                        "value": value,
                    }
                print(json.dumps(value, default=_json_default), flush=True)
                printed += 1
    except BrokenPipeError:
        pass
    finally:
        consumer.close()
    return 0


def tail_batch(most: int | None, printed: int, batch: int = 500) -> int:
    """How many records the next read of ``eddy tail`` asks for: a full batch when it follows without ``--max``.

    >>> tail_batch(None, 500), tail_batch(None, 10_000), tail_batch(700, 500), tail_batch(3, 0)
    (500, 500, 200, 3)
    """
    return batch if most is None else min(batch, most - printed)


def _show_bytes(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


# -- dead letters -----------------------------------------------------------------------------------


def cmd_dlq(args: argparse.Namespace) -> int:
    from eddy.history.dlq_tools import (
        AuditError,
        DlqError,
        audited_replay,
        format_entry,
        format_replay,
        read_dlq,
        replay_dlq,
    )

    settings = resolve_settings()
    stream = args.stream if args.action == "replay" else args.action
    if args.action != "replay" and (args.reason or args.dry_run or args.url):
        raise UsageError("--reason, --dry-run and --url go with `eddy dlq replay S`")
    if args.action == "replay" and args.max is not None:
        raise UsageError("--max goes with `eddy dlq S` (a replay sends every dead letter that matches --reason)")
    if args.action == "replay" and not args.stream:
        raise UsageError("eddy dlq replay S: name the stream whose dead letters to replay")
    if args.action != "replay" and args.stream:
        raise UsageError(f"eddy dlq {args.action} {args.stream}: name one stream, or `eddy dlq replay S`")
    _contract(settings, stream)
    _check_kafka(settings)
    try:
        if args.action != "replay":
            shown = 0
            for entry in read_dlq(settings, stream, max_records=args.max):
                print(entry.to_json() if args.json else format_entry(entry), flush=True)
                shown += 1
            if not shown:  # an empty answer on stdout alone reads like a command that did nothing
                print(f"no dead letters in {StreamTopics(stream).dlq}", file=sys.stderr)
            return 0
        if args.dry_run:
            result = replay_dlq(settings, stream, only_reasons=args.reason or None, dry_run=True)
        else:
            # An operator action: recorded in the model registry's audit log under EDDY_API_KEY's identity.
            def record(action: str, details: dict[str, Any]) -> None:
                try:
                    cli_models.record_audit(stream, action, details, url=args.url)
                except CliError as exc:
                    raise AuditError(str(exc)) from exc

            result = audited_replay(settings, stream, record, only_reasons=args.reason or None)
    except DlqError as exc:
        raise CliError(str(exc)) from exc
    print(result.to_json() if args.json else format_replay(result))
    return 0


# -- demo feed ---------------------------------------------------------------------------------------


def cmd_demo_feed(args: argparse.Namespace) -> int:
    from eddy.kafka.client import producer_config
    from eddy.kafka.producer import ConfirmedProducer
    from eddy.runtime.observability import setup_logging, stop_event_on_signals
    from eddy.runtime.service import retry
    from eddy.stack.demo import DemoConfig, run_demo_feed

    settings = resolve_settings()
    setup_logging("demo-feed", settings.log_level, settings.log_format)
    _contract(settings, args.stream)
    stop = stop_event_on_signals()
    serdes = retry(lambda: _registered_demo(settings, args.stream), "register demo schemas", stop)
    config = DemoConfig(
        stream=args.stream,
        rate=args.rate,
        count=args.count,
        label_delay_s=args.label_delay,
        drift_at=args.drift_at,
        seed=args.seed,
        run_id=args.run_id or f"demo-{uuid.uuid4().hex[:8]}",
    )
    sent = run_demo_feed(config, serdes, ConfirmedProducer(producer_config(settings)), stop)
    print(f"demo feed: {sent} events sent", file=sys.stderr)
    return 0


def _registered_demo(settings: Settings, stream: str) -> Any:
    serdes = _serdes(settings)
    serdes.register([StreamTopics(stream).events, StreamTopics(stream).feedback])
    return serdes


# -- streams and config ------------------------------------------------------------------------------


def cmd_streams(args: argparse.Namespace) -> int:
    if args.action == "validate":
        return cli_streams.validate(args.name)
    if args.action == "schema":
        return cli_streams.print_schema(args.name)
    settings = Settings.from_env()
    contracts = _contracts(settings)
    if args.action == "list":
        if args.name:
            raise UsageError(f"eddy streams list takes no name (`eddy streams show {args.name}` shows one)")
        roles = _current_roles(settings, sorted(contracts))
        for name, c in sorted(contracts.items()):
            champion = roles[name]["champion"]
            print(f"{name:<20} {c.task:<11} {len(c.features):>3} features  champion={champion}  {c.path}")
        sources = {r["source"] for r in roles.values()}
        if sources:
            print(f"champions from {' and '.join(sorted(sources))}", file=sys.stderr)
        return 0
    if not args.name:
        raise UsageError("eddy streams show S: name the stream (`eddy streams list` lists them)")
    contract = _contract(settings, args.name)
    doc = {
        "stream": contract.name,
        "task": contract.task,
        "id_field": contract.id_field,
        "time_field": contract.time_field,
        "label_field": contract.label_field,
        "allowed_lateness_ms": contract.allowed_lateness_ms,
        "pii": {"drop": list(contract.pii.drop), "hash": list(contract.pii.hash)},
        "features": [f.__dict__ for f in contract.features],
        "models": [json.loads(m.to_json()) for m in contract.models],
        "path": str(contract.path),
    }
    print(json.dumps(doc, indent=2))
    return 0


def cmd_config(_args: argparse.Namespace) -> int:
    table = list(settings_table())
    width = max(len(env) for env, _, _ in table)  # the longest name must not push its row out of line
    for env, default, doc in table:
        print(f"{env:<{width}} {default:<40} {doc}")
    return 0


# -- parser ----------------------------------------------------------------------------------------------


class EddyArgumentParser(argparse.ArgumentParser):
    """argparse with eddy's usage errors: one line that says what is wrong and where the help is; exit code 2.

    Subcommand parsers are of the same class (``add_subparsers`` makes them so).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def version_line() -> str:
    """The installed distribution's version, where the package runs from, and on which Python.

    >>> version_line().startswith("eddy ")
    True
    """
    try:
        installed = importlib.metadata.version("eddy")
    except importlib.metadata.PackageNotFoundError:
        installed = "(no installed distribution)"
    package = Path(__file__).resolve().parent.parent
    return f"eddy {installed} from {package} (Python {sys.version.split()[0]} at {sys.executable})"


class VersionAction(argparse.Action):
    """``--version``: :func:`version_line` as it is (argparse's own action wraps it at the terminal's width)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kw: Any) -> NoReturn:
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = EddyArgumentParser(prog="eddy", description="Streaming MLOps on Kafka.")
    parser.add_argument("--version", action=VersionAction, help="show eddy's version, where it runs from, and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the embedded stack (broker, registry, every service) until Ctrl-C")
    up.add_argument("--demo", action="store_true", help="also run the demo feed on the demo stream")
    up.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        help="the broker to start: tansu (in memory, the default) or kafka (Apache Kafka, `eddy kafka install`)",
    )
    up.add_argument("--rate", type=positive_number, default=100.0, help="demo events per second (default 100)")
    up.add_argument(
        "--label-delay", type=non_negative_number, default=2.0, help="seconds before a demo label arrives (default 2)"
    )
    up.add_argument(
        "--drift-at", type=non_negative_int, default=6000, help="demo event at which the concept drifts (default 6000)"
    )
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop a running `eddy up`")
    down.add_argument("--timeout", type=positive_number, default=60.0, help="seconds to wait for it (default 60)")
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="health and consumer lag of every service")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    for name, func, what in (("produce", cmd_produce, "events to S.events"), ("feedback", cmd_feedback, "labels")):
        p = sub.add_parser(name, help=f"send {what} from JSON lines, a JSON array or CSV ('-' for stdin)")
        p.add_argument("stream")
        p.add_argument("file")
        p.set_defaults(func=func)

    tail = sub.add_parser("tail", help="print a topic's records as JSON lines (decoded Avro)")
    tail.add_argument("topic")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--max", type=positive_int, default=None, help="stop after N records (default: follow)")
    tail.add_argument("--timeout", type=positive_number, default=None, help="stop after SEC seconds")
    tail.add_argument("--meta", action="store_true", help="include topic, partition, offset, key, timestamp")
    tail.set_defaults(func=cmd_tail)

    demo = sub.add_parser("demo-feed", help="produce the demo stream (SEA with a concept drift) and its labels")
    demo.add_argument("--stream", default="demo")
    demo.add_argument("--rate", type=positive_number, default=100.0)
    demo.add_argument("--count", type=non_negative_int, default=0, help="events to send (0: until stopped)")
    demo.add_argument("--label-delay", type=non_negative_number, default=2.0)
    demo.add_argument("--drift-at", type=non_negative_int, default=6000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--run-id", default="")
    demo.set_defaults(func=cmd_demo_feed)

    dlq = sub.add_parser(
        "dlq",
        help="`eddy dlq S` shows dead letters and reasons; `eddy dlq replay S` sends them back through validation",
    )
    dlq.add_argument("action", metavar="S|replay", help="a stream name to show its DLQ, or `replay`")
    dlq.add_argument("stream", nargs="?", help="with replay: the stream")
    dlq.add_argument("--max", type=positive_int, default=None, help="show at most N records")
    dlq.add_argument("--json", action="store_true", help="one JSON object per line")
    dlq.add_argument("--reason", action="append", help="with replay: only these reasons (prefix match; repeatable)")
    dlq.add_argument("--dry-run", action="store_true", help="with replay: report, send nothing")
    dlq.add_argument(
        "--url", help="with replay: the model registry whose audit log records it (default: as `eddy models`)"
    )
    dlq.set_defaults(func=cmd_dlq)

    streams = sub.add_parser("streams", help="list, show or validate stream contracts, or print their JSON Schema")
    streams.add_argument("action", choices=["list", "show", "validate", "schema"])
    streams.add_argument("name", nargs="?", help="stream name (show) or contract file (validate)")
    streams.set_defaults(func=cmd_streams)

    config = sub.add_parser("config", help="every setting, its environment variable and default")
    config.set_defaults(func=cmd_config)
    commands = (cli_models, cli_backtest, cli_dataset, cli_experiments, cli_replay, cli_kafka, cli_keys, cli_mlflow)
    for module in commands:
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``eddy`` command; its exit code (0 done, 1 failed, 2 wrong command line)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not logging.getLogger().handlers:
        logging.basicConfig(level=cli_log_level("ERROR").upper(), format="eddy: %(message)s")
    if not explicitly_set("EDDY_LOG_LEVEL") and args.func is not cmd_up:
        from eddy.kafka.client import client_log

        # A command says "cannot reach Kafka" once; librdkafka would say it again for every retry first.
        client_log.setLevel(logging.CRITICAL)
    try:
        result: int = args.func(args)
        return result
    except CliError as exc:
        print(f"eddy: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except ContractError as exc:  # a contract file that does not load: the files are wrong, not the command
        print(f"eddy: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except _transport_errors() as exc:  # the schema registry or another service of the stack is not answering
        where = f" {_origin(exc)}" if _origin(exc) else ""
        print(f"eddy: error: cannot reach{where}: {one_line(str(exc))} (is `eddy up` running?)", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # `eddy ... | head`: the reader has all it wanted. Point stdout at /dev/null so that the flush at
        # exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        # Errors from Kafka, the registry or the stack are still one line; --debug shows the trace.
        if cli_settings().debug:
            raise
        logging.getLogger("eddy").debug("failed", exc_info=True)
        print(f"eddy: error: {type(exc).__name__}: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE


def _transport_errors() -> tuple[type[Exception], ...]:
    """httpx's, and those of the httpx fork confluent-kafka's schema registry client runs on (through authlib)."""
    errors: list[type[Exception]] = [httpx.TransportError]
    try:
        import httpx2  # type: ignore[import-not-found, unused-ignore]

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    return tuple(errors)


def _origin(exc: Exception) -> str:
    try:
        url = exc.request.url  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # raised without a request
        return ""
    return f"{url.scheme}://{url.host}:{url.port}" if url.port else f"{url.scheme}://{url.host}"


def one_line(message: str) -> str:
    r"""An error message on one line: a multi-line one (a broker's, a contract's list of problems) joined by "; ".

    >>> one_line("contract demo.yaml:\n  - no features\n  - no models\n")
    'contract demo.yaml: - no features; - no models'
    """
    out = ""
    for line in (text.strip() for text in message.splitlines()):
        if line:
            out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


if __name__ == "__main__":
    sys.exit(main())

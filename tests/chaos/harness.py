"""One chaos run: the whole embedded stack up, the load and the faults together, settle, check, stack down.

The stack is what ``eddy up`` runs (``tests/chaos/stack.py``), on a fresh broker and state directory,
serving one stream: a copy of the demo contract under the run's own name, with retraining's drift
trigger off so that the champion stays ``default@1`` for the whole run (promotions under faults are
another test's subject; here every label has exactly one learner it must reach).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from eddy.avro.serde import SerdeRegistry, TopicSerde, registry_client
from eddy.contracts.stream import load_contracts
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import producer_config
from eddy.runtime.loop import StreamLoop
from eddy.stack.up import pid_alive, read_stack, service_health

from tests.chaos import checker
from tests.chaos.broker_faults import MIN_INSYNC_REPLICAS, REPLICATION_FACTOR, BrokerChaos, BrokerFaultRecord
from tests.chaos.faults import ALL_SERVICES, ChildEvent, Fault, FaultRecord, FaultScheduler, match_exits, plan_faults
from tests.chaos.load import LoadConfig, LoadLog, LoadRunner, plan_events
from tests.chaos.stack import child_events, stop_stack

# Services whose consumer lag must reach 0 before the topics are checked: the data path.
SETTLED_SERVICES = ("validation", "inference", "learning")
STACK_UP_TIMEOUT_S = 120.0
STACK_DOWN_TIMEOUT_S = 120.0
SETTLE_POLL_S = 2.0
EMPTY_LAG_QUIET_S = 15.0
SESSION_TIMEOUT_MS = 6000
# What eddy.kafka.transactions logs when it gives a stuck producer up, and how long before the exit it may be.
STUCK_MESSAGE = "transaction call stuck"
STUCK_WINDOW_MS = 60_000
# The stream topics whose partition leaders broker faults aim at.
BROKER_FAULT_TOPICS = ("events", "validated", "predictions", "feedback", "labeled")
BROKER_FAULTS_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class RunConfig:
    """One run: the seed decides the events, labels and faults.

    Faults fall between ``fault_window`` (fractions of the load's duration); ``targets`` are the
    services they may hit. ``batch_size`` is the stack's ``EDDY_BATCH_SIZE``, which bounds redeliveries.
    ``transactions`` turns on ``EDDY_KAFKA_TRANSACTIONS`` for the stack's services (their consumers then
    read committed); ``isolation`` is how the checker reads. ``broker`` is what the stack starts
    (``EDDY_EMBEDDED_BROKER``: ``tansu`` or a single ``kafka`` node). ``broker_faults`` > 0 runs the stack
    on a 3-node Kafka cluster of the harness's own instead (``tests/chaos/broker_faults.py``), whose
    brokers take that many faults during the load; stream topics then get replication factor 3.
    """

    seed: int
    events: int = 6000
    rate: float = 400.0
    faults: int = 4
    targets: tuple[str, ...] = ALL_SERVICES
    fault_window: tuple[float, float] = (0.1, 0.9)
    batch_size: int = 500
    settle_timeout_s: float = 120.0
    isolation: str = "read_uncommitted"
    transactions: bool = False
    # Another name for the stream, e.g. one of its own on a shared external broker that keeps topics.
    stream_name: str = ""
    broker: str = "tansu"
    broker_faults: int = 0

    @property
    def stream(self) -> str:
        return self.stream_name or f"chaos{self.seed}"

    @property
    def on_kafka(self) -> bool:
        """Whether the stack runs on Apache Kafka that the harness knows (not an unknown external broker)."""
        return self.broker_faults > 0 or (self.broker == "kafka" and not os.environ.get("EDDY_BOOTSTRAP_SERVERS"))


@dataclass
class RunResult:
    """What a run did and the checker's verdict, with the report printed for it."""

    config: RunConfig
    verdict: checker.Verdict
    faults: list[FaultRecord]
    load: LoadLog
    elapsed_s: float
    settle_s: float
    started_at: str
    report: str = ""
    stack_log: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    broker_faults: list[BrokerFaultRecord] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict.passed


def write_contract(directory: Path, stream: str) -> Path:
    """The demo contract as stream ``stream``, with the drift trigger off, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "schemas/streams/demo.avsc", directory / "demo.avsc")
    text = (REPO_ROOT / "schemas/streams/demo.yaml").read_text()
    for old, new in (("stream: demo", f"stream: {stream}"), ("triggers: {drift: true}", "triggers: {drift: false}")):
        if old not in text:
            raise RuntimeError(f"schemas/streams/demo.yaml no longer says {old!r}: update tests/chaos/harness.py")
        text = text.replace(old, new)
    path = directory / f"{stream}.yaml"
    path.write_text(text)
    return path


def stack_env(config: RunConfig, workdir: Path, cluster: str = "") -> dict[str, str]:
    """The runner's environment: nothing of the caller's EDDY_* but an external broker, if one is named.

    ``cluster``: the bootstrap servers of the harness's own 3-node cluster, whose topics eddy creates
    with replication factor 3 and ``min.insync.replicas=2``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
    if os.environ.get("EDDY_BOOTSTRAP_SERVERS"):
        env["EDDY_BOOTSTRAP_SERVERS"] = os.environ["EDDY_BOOTSTRAP_SERVERS"]
    if cluster:
        env["EDDY_BOOTSTRAP_SERVERS"] = cluster
        env["EDDY_REPLICATION_FACTOR"] = str(REPLICATION_FACTOR)
        env["EDDY_MIN_INSYNC_REPLICAS"] = str(MIN_INSYNC_REPLICAS)
    env.update(
        EDDY_EMBEDDED_BROKER=config.broker,
        EDDY_STATE_DIR=str(workdir / "state"),
        EDDY_CONTRACTS_DIR=str(workdir / "contracts"),
        EDDY_STREAMS=config.stream,
        EDDY_BATCH_SIZE=str(config.batch_size),
        # What the embedded stack sets anyway; on an external broker it keeps the long pauses' length.
        EDDY_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        # Groups of the run's own: on a shared external broker, earlier runs' members cannot interfere.
        EDDY_GROUP_PREFIX=f"eddy-{config.stream}-{os.getpid()}",
        EDDY_LOG_FORMAT="json",
    )
    if config.transactions:
        env["EDDY_KAFKA_TRANSACTIONS"] = "true"
    return env


@contextlib.contextmanager
def running_stack(
    config: RunConfig, workdir: Path, cluster: str = ""
) -> Iterator[tuple[dict[str, Any], subprocess.Popen[bytes]]]:
    """The stack, up and healthy; stopped (SIGTERM, then SIGKILL if it hangs) on the way out."""
    state = workdir / "state"
    log = workdir / "stack.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.stack"],
            env=stack_env(config, workdir, cluster),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield _wait_up(state, proc), proc
    finally:
        stop_stack(proc, STACK_DOWN_TIMEOUT_S)


def _wait_up(state: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + STACK_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the stack exited with {proc.returncode} while starting; see {state.parent}/stack.log")
        stack = read_stack(state)
        if stack and stack.get("ready") and not down_services(stack):
            return stack
        time.sleep(0.5)
    raise RuntimeError(f"the stack was not healthy within {STACK_UP_TIMEOUT_S:.0f}s; see {state.parent}/stack.log")


def down_services(stack: dict[str, Any]) -> list[str]:
    """The services that are not running or do not answer ``ok`` on /healthz."""
    return [
        name
        for name, info in stack["services"].items()
        if not pid_alive(info.get("pid")) or service_health(info.get("url"), 2.0).get("status") != "ok"
    ]


def settle(state: Path, settings: Settings, stream: str, timeout_s: float) -> tuple[float, list[str]]:
    """Wait until the stack is quiet: every service healthy, no consumer lag, and outputs no longer growing.

    Quiet means two polls in a row (``SETTLE_POLL_S`` apart) in which the data path's services hold
    their partitions with lag 0 and the stream's output topics, counted to their end, did not grow.
    A service whose lag table is empty holds no position yet: not yet assigned, or (on Kafka, after
    a rebalance with nothing left to read) assigned at the end, where it reads nothing to learn its
    position from. Both look alike from outside, so with an empty table the outputs must stay
    unchanged for ``EMPTY_LAG_QUIET_S``, longer than a rebalance takes. Bounded by ``timeout_s``;
    returns the seconds waited and the services still down.
    """
    started = time.monotonic()
    previous: Counter[str] | None = None
    unchanged_since = started
    down: list[str] = []
    why = ""
    outputs = [getattr(StreamTopics(stream), kind) for kind in ("validated", "dlq", "predictions", "labeled", "models")]
    while time.monotonic() - started < timeout_s:
        stack = read_stack(state) or {"services": {}}
        down = down_services(stack)
        lags = [service_health(stack["services"][name]["url"], 2.0).get("consumer_lag") for name in SETTLED_SERVICES]
        no_lag = not down and all(lag is not None and not any(lag.values()) for lag in lags)
        counts = checker.count_records(settings, outputs) if no_lag else None
        if counts is None or counts != previous:
            unchanged_since = time.monotonic()
        elif all(lags) or time.monotonic() - unchanged_since >= EMPTY_LAG_QUIET_S:
            return time.monotonic() - started, []
        why = f"down {down}" if down else f"lags {dict(zip(SETTLED_SERVICES, lags, strict=True))}"
        why = why if not no_lag else f"outputs still growing or lag tables empty: {counts}, {why}"
        previous = counts
        time.sleep(SETTLE_POLL_S)
    # Said on stderr, not in the verdict: a slow settle is a finding to look into, not by itself a failure.
    print(f"not settled within {timeout_s:.0f}s: {why}", file=sys.stderr, flush=True)
    dump_stacks(state, read_stack(state) or {"services": {}})
    return time.monotonic() - started, down


def dump_stacks(state: Path, stack: dict[str, Any]) -> None:
    """Each data-path service's Python stacks (py-spy, if installed) next to its log: where a stuck one waits."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    for name in SETTLED_SERVICES:
        pid = stack["services"].get(name, {}).get("pid")
        if not pid or not Path(spy).exists():
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
            (state / "logs" / f"{name}.stacks.txt").write_text(done.stdout + done.stderr)


def stuck_exits(exits: list[ChildEvent], state: Path) -> tuple[list[ChildEvent], list[ChildEvent]]:
    """Split exits into the unexplained and those a stuck transaction call explains, from the service's log.

    librdkafka's ``send_offsets_to_transaction`` can block for good once the group coordinator's broker
    went away (``shared/eddy/kafka/transactions.py``); the service then gives its producer up and exits, and its
    log says so just before. Those exits are reported on their own row, not hidden and not failed.
    """
    unexplained: list[ChildEvent] = []
    stuck: list[ChildEvent] = []
    for event in exits:
        log = state / "logs" / f"{event.child}.log"
        said = log.exists() and any(
            STUCK_MESSAGE in line and event.at_ms - STUCK_WINDOW_MS <= _line_ms(line) <= event.at_ms
            for line in log.read_text(errors="replace").splitlines()
        )
        (stuck if said else unexplained).append(event)
    return unexplained, stuck


def _line_ms(line: str) -> int:
    try:
        return int(float(json.loads(line)["ts"]) * 1000)
    except (ValueError, KeyError, TypeError):
        return -1


def loop_in_flight(transactions: bool = False) -> int:
    """How many batches a StreamLoop may have unacknowledged (its default, which every service uses).

    A transactional loop commits each batch before it reads the next: one.
    """
    if transactions:
        return 1
    default: int = inspect.signature(StreamLoop.__init__).parameters["max_in_flight"].default
    return default


def run_once(config: RunConfig, workdir: Path) -> RunResult:
    """One seeded run in ``workdir`` (a fresh directory): returns the verdict and the report."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_contract(workdir / "contracts", config.stream)
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    began = time.monotonic()
    load_config = LoadConfig(config.stream, events=config.events, rate=config.rate)
    window = (load_config.duration_s * config.fault_window[0], load_config.duration_s * config.fault_window[1])
    plan = plan_faults(config.seed, config.faults, window, config.targets, SESSION_TIMEOUT_MS / 1000)
    with contextlib.ExitStack() as cleanup:
        brokers = None
        if config.broker_faults:
            brokers = cleanup.enter_context(BrokerChaos(workdir, config.seed, config.broker_faults))
        cluster = brokers.bootstrap_servers if brokers else ""
        stack, _proc = cleanup.enter_context(running_stack(config, workdir, cluster))
        settings = Settings(
            bootstrap_servers=stack["bootstrap_servers"],
            schema_registry_url=stack["schema_registry_url"],
            contracts_dir=workdir / "contracts",
            streams=(config.stream,),
        )
        contracts = load_contracts(settings.contracts_dir, settings.streams)
        serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
        events_serde = serdes.for_topic(StreamTopics(config.stream).events)
        assert isinstance(events_serde, TopicSerde)
        faulted = (brokers, window) if brokers else None
        load, records, broker_records = _load_and_faults(
            config, workdir, stack, settings, events_serde, load_config, plan, faulted
        )
        settle_s, down = settle(workdir / "state", settings, config.stream, config.settle_timeout_s)
        unexplained, stuck = stuck_exits(match_exits(records, child_events(workdir / "stack.log")), workdir / "state")
        topics = checker.read_stream(settings, serdes, config.stream, config.isolation)
        hidden = checker.hidden_by_isolation(settings, config.stream, topics.read) if config.transactions else None
    champion = contracts[config.stream].champion.name
    facts = checker.RunFacts(
        records,
        unexplained,
        down,
        (champion, 1),
        config.batch_size,
        loop_in_flight(config.transactions),
        broker_faults=broker_records,
        stuck_exits=stuck,
        # Kafka hides aborted transactions from read_committed readers: no service may redeliver at all.
        exactly_once=config.transactions and config.on_kafka,
        hidden=hidden,
    )
    verdict = checker.check(topics, load, facts)
    result = RunResult(
        config, verdict, records, load, time.monotonic() - began, settle_s, started_at, stack_log=workdir / "stack.log"
    )
    result.counts = dict(topics.read)
    result.broker_faults = broker_records
    result.report = report(result)
    return result


def _load_and_faults(
    config: RunConfig,
    workdir: Path,
    stack: dict[str, Any],
    settings: Settings,
    serde: TopicSerde,
    load_config: LoadConfig,
    plan: list[Fault],
    brokers: tuple[BrokerChaos, tuple[float, float]] | None = None,
) -> tuple[LoadLog, list[FaultRecord], list[BrokerFaultRecord]]:
    """Run the load, the fault plan and the broker faults (if any) at the same time, from the same origin."""
    producer = Producer(producer_config(settings))
    runner = LoadRunner(
        load_config, plan_events(config.seed, load_config), stack["services"]["ingestion"]["url"], producer, serde
    )
    scheduler = FaultScheduler(plan, workdir / "state")
    stop = threading.Event()
    origin = time.monotonic()
    records: list[FaultRecord] = []
    faults = threading.Thread(target=lambda: records.extend(scheduler.run(stop, origin)), name="chaos-faults")
    faults.start()
    if brokers:
        topics = StreamTopics(config.stream)
        brokers[0].begin({kind: getattr(topics, kind) for kind in BROKER_FAULT_TOPICS}, brokers[1], origin)
    try:
        load = runner.run(stop)
    except BaseException:
        stop.set()  # an interrupted run resumes what it stopped and goes no further
        if brokers:
            brokers[0].interrupt()
        raise
    finally:
        # The load is bounded by its own deadline; the faults left then still run (each is bounded).
        faults.join()
        broker_records = brokers[0].wait_done(BROKER_FAULTS_TIMEOUT_S) if brokers else []
        stop.set()
    return load, records, broker_records


def broker_name(config: RunConfig) -> str:
    if config.broker_faults:
        replicas = f"RF {REPLICATION_FACTOR}, min ISR {MIN_INSYNC_REPLICAS}"
        return f"Apache Kafka, 3 nodes ({replicas}), {config.broker_faults} broker faults"
    if os.environ.get("EDDY_BOOTSTRAP_SERVERS"):
        return "external"
    return "Apache Kafka, 1 node" if config.broker == "kafka" else "Tansu"


def report(result: RunResult) -> str:
    """The run's header, its fault log and its verdict table."""
    c, load = result.config, result.load
    accepted = load.accepted_events()
    lines = [
        f"chaos run seed={c.seed} stream={c.stream} started {result.started_at}, {result.elapsed_s:.0f}s "
        f"(settled in {result.settle_s:.0f}s); broker {broker_name(c)}; "
        f"transactions {'on' if c.transactions else 'off'}, checker reads {c.isolation}",
        f"load: {len(load.plan)} events at {c.rate:.0f}/s, {len(accepted)} accepted "
        f"({len(load.accepted_events('invalid'))} invalid), {len(load.accepted_labels())} labels accepted; "
        f"client failures: {dict(load.failures) or 'none'}",
        f"read: {', '.join(f'{t} {n}' for t, n in sorted(result.counts.items()))}",
        "faults:",
        *(f"  {r.line(load.started_ms)}" for r in result.faults),
        *(["broker faults:"] if result.broker_faults else []),
        *(f"  {r.line(load.started_ms)}" for r in result.broker_faults),
        "redeliveries by fault: " + (", ".join(str(r) for r in result.verdict.redeliveries_by_fault) or "none"),
        result.verdict.table(),
    ]
    return "\n".join(lines)

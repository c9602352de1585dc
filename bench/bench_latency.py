"""End-to-end latency and label freshness of the running stack, on Tansu and on Apache Kafka.

For each rate and broker it starts ``eddy up --demo --broker B --rate R`` in a temporary state
directory. After a warm-up it reads, for ``--seconds``:

- ``demo.predictions``: ingestion → prediction (``predicted_at_ms - ingested_at_ms``: two Kafka hops,
  validation and inference), and inference's own processing time per batch (``latency_ms``);
- ``demo.feedback``, ``demo.models`` and the predictions: label freshness, from a label's produce time to
  the first snapshot that learned it, and to the first served prediction by such a snapshot;
- with ``--hops``, taps on ``demo.events`` and ``demo.validated``: the time of each hop;
- the stack's own freshness metrics over the same window (issue 23): learning's ``eddy_label_to_learned_seconds``
  and inference's ``eddy_label_to_served_seconds`` histograms (read inside each bucket as histogram_quantile does),
  and the monitoring dashboard's ``freshness`` entry at the end (p50/p99 over its last samples, the lag);
- the CPU of every process of the stack over the same window (``bench.bench_cost``).

Baselines in the same run: one raw hop (timestamped records produced at the same rate and consumed, with
the stack's client settings) on an idle broker of the same kind before the stack starts, and beside the
running stack. The brokers alternate at each rate, and the results are printed side by side.

Run: ``.venv/bin/python -m bench.bench_latency --broker tansu --broker kafka --rate 1000 --rate 5000
--seconds 60``. Bounded in time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import load_contracts
from eddy.core.settings import REPO_ROOT, Settings
from eddy.kafka.client import consumer_config, ensure_topics, producer_config
from eddy.stack.brokers import start_broker
from eddy.stack.up import EMBEDDED_FETCH_WAIT_MS, read_stack

from bench.bench_cost import (
    COST_TOPICS,
    NO_DRIFT,
    READERS,
    Cost,
    Meter,
    StackDidNotStart,
    broker_kinds,
    cost_table,
    cpu_seconds,
    demo_stack,
    stack_processes,
    stack_settings,
    window_cost,
)
from bench.machine import describe

# The pipeline and freshness readers time nothing themselves (the times are in the records), so they
# poll the broker gently and leave the CPU to the stack they measure.
QUIET_FETCH_WAIT_MS = 100
# Connection set-up and the first fetches are not what a hop costs.
WARMUP_S = 1.0


def serdes(settings: Settings) -> SerdeRegistry:
    """eddy's own codec for the demo stream's topics (Confluent's deserializer would load the bench process)."""
    contracts = load_contracts(REPO_ROOT / "schemas/streams", ("demo",))
    return SerdeRegistry(registry_client(settings), REPO_ROOT / "schemas", contracts)


def tail_from_end(settings: Settings, topic: str, fetch_wait_ms: int | None = None) -> Consumer:
    """A reader of ``topic`` from its end; ``fetch_wait_ms`` for readers whose numbers come from record fields."""
    overrides: dict[str, Any] = {"fetch.wait.max.ms": fetch_wait_ms} if fetch_wait_ms else {}
    consumer = Consumer(consumer_config(settings, f"bench-{uuid.uuid4().hex[:6]}", **overrides))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
    return consumer


def measure_pipeline(settings: Settings, seconds: float) -> tuple[list[float], list[float]]:
    consumer = tail_from_end(settings, "demo.predictions", QUIET_FETCH_WAIT_MS)
    decode = serdes(settings).for_topic("demo.predictions").decode
    e2e, processing = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for msg in consumer.consume(500, 0) or consumer.consume(1, 0.01):
            if msg.error():
                continue
            p = decode(msg.value())
            if p["ingested_at_ms"]:
                e2e.append(p["predicted_at_ms"] - p["ingested_at_ms"])
                processing.append(p["latency_ms"])
    consumer.close()
    return e2e, processing


def measure_hops(settings: Settings, seconds: float, every: int = 10) -> dict[str, list[float]]:
    """Per-hop times of every ``every``-th event, from arrival times at a tap on each topic (ms).

    A tap reads the keys (the event ids) of ``demo.events`` and ``demo.validated`` as they arrive, with
    a 10 ms fetch wait, and notes the wall time; predictions carry ``ingested_at_ms`` and inference's
    ``predicted_at_ms``. The tap's own fetch delay is in each arrival time, so it adds to the first hop
    and roughly cancels in the middle one. Rows: feed → events tap, events tap → validated tap (validation
    and its produce), validated tap → predicted (inference's fetch and batch).
    """
    topics = ["demo.events", "demo.validated", "demo.predictions"]
    consumers = [tail_from_end(settings, t, 10) for t in topics]
    decode = serdes(settings).for_topic("demo.predictions").decode
    seen: dict[str, dict[bytes, float]] = {"demo.events": {}, "demo.validated": {}}
    predicted: list[tuple[bytes, float, float]] = []  # key, ingested_at, predicted_at (ms)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for topic, consumer in zip(topics, consumers, strict=True):
            batch = consumer.consume(1000, 0.003)
            now = time.time() * 1000
            for msg in batch:
                key = msg.key()
                if msg.error() or key is None or hash(key) % every:
                    continue
                if topic == "demo.predictions":
                    p = decode(msg.value())
                    if p["served"] and p["ingested_at_ms"]:
                        predicted.append((key, float(p["ingested_at_ms"]), float(p["predicted_at_ms"])))
                else:
                    seen[topic].setdefault(key, now)
    for consumer in consumers:
        consumer.close()
    hops: dict[str, list[float]] = {"feed → events": [], "events → validated": [], "validated → predicted": []}
    for key, ingested, at in predicted:
        on_events, on_validated = seen["demo.events"].get(key), seen["demo.validated"].get(key)
        if on_events is None or on_validated is None:
            continue
        hops["feed → events"].append(on_events - ingested)
        hops["events → validated"].append(on_validated - on_events)
        hops["validated → predicted"].append(at - on_validated)
    return hops


def measure_freshness(settings: Settings, seconds: float) -> tuple[list[float], list[float]]:
    """Per label: from its produce time to the first snapshot that learned it, and to a served prediction (ms).

    A label at offset o of ``demo.feedback`` partition p is learned by the first snapshot of a version
    whose ``source_offsets`` for that partition are past o (its time: the snapshot record's produce
    timestamp); it is served once a served prediction of that version carries that snapshot's (or a later)
    learned count. Versions are told apart (a challenger's learned count starts again from its own
    training), and the earliest over the versions is taken.
    """
    topics = ["demo.feedback", "demo.models", "demo.predictions"]
    consumers = [tail_from_end(settings, t, QUIET_FETCH_WAIT_MS) for t in topics]
    registry = serdes(settings)
    labels: list[tuple[int, int, float]] = []  # partition, offset, produced at (ms)
    # version -> [(learned count, source offsets, published at)]
    snapshots: dict[int, list[tuple[int, dict[str, int], float]]] = {}
    first_served: dict[tuple[int, int], float] = {}  # (version, learned count) -> first predicted_at_ms
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for topic, consumer in zip(topics, consumers, strict=True):
            for msg in consumer.consume(500, 0.005):
                if msg.error():
                    continue
                if topic == "demo.feedback":
                    labels.append((msg.partition() or 0, msg.offset() or 0, float(msg.timestamp()[1])))
                    continue
                value = registry.for_topic(topic).decode(msg.value())
                if topic == "demo.models" and value["model_name"] == "default":
                    entry = (value["learned_count"], value["source_offsets"], float(msg.timestamp()[1]))
                    snapshots.setdefault(value["model_version"], []).append(entry)
                elif topic == "demo.predictions" and value["served"]:
                    first_served.setdefault(
                        (value["model_version"], value["model_learned"]), float(value["predicted_at_ms"])
                    )
    for consumer in consumers:
        consumer.close()
    served: dict[int, list[tuple[int, float]]] = {}
    for (version, learned), at in sorted(first_served.items()):
        served.setdefault(version, []).append((learned, at))
    to_learned, to_served = [], []
    for partition, offset, produced in labels:
        source = f"demo.feedback:{partition}"
        learned_at, visible_at = [], []
        for version, entries in snapshots.items():
            snapshot = next(((n, at) for n, offsets, at in entries if offsets.get(source, 0) > offset), None)
            if snapshot is None:
                continue  # not yet in a snapshot of this version when the window closed
            learned_at.append(snapshot[1])
            visible = next((at for n, at in served.get(version, []) if n >= snapshot[0]), None)
            if visible is not None:
                visible_at.append(visible)
        if learned_at:
            to_learned.append(min(learned_at) - produced)
        if visible_at:
            to_served.append(min(visible_at) - produced)
    return to_learned, to_served


def measure_baseline(settings: Settings, rate: float, seconds: float) -> list[float]:
    topic = f"bench-latency-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings, [topic])
    consumer = tail_from_end(settings, topic)
    time.sleep(1.0)
    producer = Producer(producer_config(settings))
    stop = threading.Event()

    def produce() -> None:
        sent, started = 0, time.monotonic()
        while not stop.is_set():
            while sent < (time.monotonic() - started) * rate:
                producer.produce(topic, struct.pack(">d", time.time()), str(sent).encode())
                sent += 1
            producer.poll(0)
            time.sleep(0.002)
        producer.flush(5)

    thread = threading.Thread(target=produce)
    thread.start()
    latencies = []
    measured_from = time.time() + WARMUP_S
    deadline = time.monotonic() + seconds + WARMUP_S
    while time.monotonic() < deadline:
        for msg in consumer.consume(500, 0) or consumer.consume(1, 0.01):
            sent_at = struct.unpack(">d", msg.value() or bytes(8))[0] if not msg.error() else 0.0
            if sent_at >= measured_from:
                latencies.append((time.time() - sent_at) * 1000)
    stop.set()
    thread.join(10)
    consumer.close()
    return latencies


def batch_totals(stack: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per service: (records, micro-batches) handled so far, from its ``eddy_batch_size`` histogram."""
    totals: dict[str, tuple[float, float]] = {}
    for name, info in (stack.get("services") or {}).items():
        if not info.get("url"):
            continue
        try:
            text = httpx.get(f"{info['url']}/metrics", timeout=2.0).text
        except httpx.HTTPError:
            continue
        records = batches = 0.0
        for line in text.splitlines():
            if line.startswith("eddy_batch_size_sum"):
                records += float(line.rsplit(" ", 1)[1])
            elif line.startswith("eddy_batch_size_count"):
                batches += float(line.rsplit(" ", 1)[1])
        if batches:
            totals[name] = (records, batches)
    return totals


FRESHNESS_METRICS = {
    "eddy_label_to_learned_seconds": "stack's metric: label → learned (learning's histogram, interpolated)",
    "eddy_label_to_served_seconds": "stack's metric: label → served at swap-in (inference's histogram, interpolated)",
}


def freshness_buckets(stack: dict[str, Any]) -> dict[str, dict[float, float]]:
    """Per freshness histogram, its cumulative bucket counts (``le`` in seconds) summed over every service."""
    found: dict[str, dict[float, float]] = {name: {} for name in FRESHNESS_METRICS}
    for info in (stack.get("services") or {}).values():
        if not info.get("url"):
            continue
        try:
            text = httpx.get(f"{info['url']}/metrics", timeout=2.0).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            name, _, rest = line.partition("_bucket{")
            if name not in found or 'model="default"' not in rest:
                continue
            le = rest.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            found[name][bound] = found[name].get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def bucket_values(before: dict[float, float], after: dict[float, float]) -> list[float]:
    """The window's observations of a histogram (ms), from two scrapes, spread evenly inside each bucket.

    That is how Prometheus's ``histogram_quantile`` reads a bucket; the +Inf bucket's are put at the
    largest finite bound.

    >>> bucket_values({0.1: 1, 1.0: 1, float("inf"): 1}, {0.1: 3, 1.0: 5, float("inf"): 5})
    [50.0, 100.0, 550.0, 1000.0]
    """
    values: list[float] = []
    below, lower = 0.0, 0.0
    finite = [b for b in after if b != float("inf")]
    for bound in sorted(after):
        cumulative = after[bound] - before.get(bound, 0.0)
        count = int(cumulative - below)
        upper = bound if bound != float("inf") else max(finite, default=lower)
        values += [(lower + (upper - lower) * (i + 1) / count) * 1000 for i in range(count)]
        below, lower = cumulative, upper
    return values


def dashboard_freshness(stack: dict[str, Any]) -> dict[str, Any] | None:
    """The monitoring dashboard's ``freshness`` entry for the demo stream (None when it does not answer)."""
    url = ((stack.get("services") or {}).get("monitoring") or {}).get("url")
    if not url:
        return None
    try:
        document = httpx.get(f"{url}/api/dashboard", params={"stream": "demo"}, timeout=3.0).json()
    except (httpx.HTTPError, ValueError):
        return None
    return document.get("freshness")


@dataclass
class Run:
    """Everything measured for one broker at one rate."""

    broker: str
    rate: float
    seconds: float
    started: str
    load: float
    rows: dict[str, list[float]] = field(default_factory=dict)
    cost: Cost | None = None
    # Per service over the window: (micro-batches per second, mean records per micro-batch).
    batches: dict[str, tuple[float, float]] = field(default_factory=dict)
    # The monitoring dashboard's freshness entry at the end of the window.
    dashboard: dict[str, Any] | None = None


def idle_hop(broker: str, rate: float, seconds: float, fetch_wait: int) -> list[float]:
    """The one-hop baseline on a broker of the same kind with nothing else running: what a hop costs unloaded."""
    workdir = Path(tempfile.mkdtemp(prefix=f"eddy-bench-idle-{broker}-"))
    local = start_broker(broker, workdir)
    try:
        idle = Settings(
            bootstrap_servers=local.bootstrap_servers, fetch_wait_max_ms=fetch_wait, session_timeout_ms=6000
        )
        return measure_baseline(idle, rate, seconds)
    finally:
        local.stop()


def stack_fetch_wait(broker: str, explicit: int) -> int:
    """The prediction path's fetch.wait.max.ms in the stack: Tansu's short embedded wait, else the default."""
    if explicit:
        return explicit
    return EMBEDDED_FETCH_WAIT_MS if broker == "tansu" else Settings().fetch_wait_max_ms


def run_one(broker: str, rate: float, args: argparse.Namespace) -> Run:
    fetch_wait = stack_fetch_wait(broker, args.fetch_wait_ms)
    run = Run(broker, rate, args.seconds, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.getloadavg()[0])
    run.rows[IDLE] = idle_hop(broker, rate, min(args.seconds, 10.0), fetch_wait)
    extra = {"EDDY_FETCH_WAIT_MAX_MS": str(args.fetch_wait_ms)} if args.fetch_wait_ms else {}
    for item in args.env or []:
        name, _, value = item.partition("=")
        extra[name] = value
    with demo_stack(broker, rate, label_delay_s=1.0, drift_at=args.drift_at, env_extra=extra) as (stack, up, state):
        # The stack's own client settings, so that the baseline hop is measured as the services consume.
        settings = stack_settings(stack, fetch_wait)
        time.sleep(args.warmup)
        stack = read_stack(state) or stack
        meter = Meter(settings, stack_processes(stack, up.pid), COST_TOPICS)
        me = cpu_seconds(os.getpid()) or 0.0
        start = meter.sample()
        batches_before = batch_totals(stack)
        buckets_before = freshness_buckets(stack)
        fresh: list[tuple[list[float], list[float]]] = []
        freshness = threading.Thread(target=lambda: fresh.append(measure_freshness(settings, args.seconds)))
        freshness.start()
        hops: dict[str, list[float]] = {}
        tap = threading.Thread(target=lambda: hops.update(measure_hops(settings, args.seconds)))
        if args.hops:
            tap.start()
        e2e, processing = measure_pipeline(settings, args.seconds)
        freshness.join(args.seconds + 30)
        if args.hops:
            tap.join(args.seconds + 30)
        end = meter.sample()
        for name, (records, count) in batch_totals(stack).items():
            records0, count0 = batches_before.get(name, (0.0, 0.0))
            if count > count0:
                run.batches[name] = ((count - count0) / (end.at - start.at), (records - records0) / (count - count0))
        buckets_after = freshness_buckets(stack)
        for name, row in FRESHNESS_METRICS.items():
            run.rows[row] = bucket_values(buckets_before[name], buckets_after[name])
        run.dashboard = dashboard_freshness(stack)
        run.cost = window_cost(broker, rate, start, end, "demo.events")
        run.cost.cpu[READERS] = (cpu_seconds(os.getpid()) or 0.0) - me
        meter.close()
        run.rows[E2E], run.rows[PROCESSING] = e2e, processing
        run.rows[LEARNED], run.rows[SERVED] = fresh[0] if fresh else ([], [])
        for name, values in hops.items():
            run.rows[f"hop: {name}"] = values
        run.rows[BASELINE] = measure_baseline(settings, rate, args.baseline_seconds)
    return run


IDLE = "baseline: one hop, idle broker, before the stack starts"
BASELINE = "**baseline**: raw produce → consume, one hop, beside the stack"
E2E = "eddy: ingestion → prediction (two hops)"
PROCESSING = "eddy: inference processing of one micro-batch"
LEARNED = "freshness: label produced → learned (in a published snapshot)"
SERVED = "freshness: label produced → served by a model that learned it"
ORDER = (IDLE, BASELINE, E2E, PROCESSING, LEARNED, SERVED, *FRESHNESS_METRICS.values())


def quantiles(values: list[float]) -> tuple[float, float, float] | None:
    if len(values) < 2:
        return None
    qs = statistics.quantiles(values, n=100)
    return qs[49], qs[94], qs[98]


def side_by_side(runs: list[Run]) -> str:
    """One markdown table: a row per path and rate, p50/p95/p99 per broker side by side."""
    brokers = list(dict.fromkeys(r.broker for r in runs))
    head = "| rate | path | " + " | ".join(f"{b} p50 / p95 / p99 ms" for b in brokers) + " |"
    lines = [head, "|---|---|" + "---:|" * len(brokers)]
    for rate in dict.fromkeys(r.rate for r in runs):
        at_rate = {r.broker: r for r in runs if r.rate == rate}
        names = list(ORDER) + sorted({n for r in at_rate.values() for n in r.rows if n not in ORDER})
        for name in names:
            cells = []
            for broker in brokers:
                run = at_rate.get(broker)
                q = quantiles(run.rows.get(name, [])) if run else None
                cells.append(f"{q[0]:,.1f} / {q[1]:,.1f} / {q[2]:,.1f}" if q else "n/a")
            lines.append(f"| {rate:,.0f}/s | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(runs: list[Run]) -> list[str]:
    """PASS/FAIL against issue 19's targets, for every run on Apache Kafka at 5,000 events/s or more."""
    out = []
    for run in runs:
        if run.broker != "kafka" or run.rate < 5000:
            continue
        checks = []
        for name, limit, unit in ((E2E, 50.0, "ms"), (LEARNED, 1000.0, "ms"), (SERVED, 1000.0, "ms")):
            q = quantiles(run.rows.get(name, []))
            if q:
                checks.append(
                    f"{name} p99 {q[2]:,.1f} {unit} (target ≤ {limit:,.0f}): {'PASS' if q[2] <= limit else 'FAIL'}"
                )
        if run.cost:
            eddy = run.cost.group(run.cost.eddy_roles) / max(run.cost.events, 1) * 1e6
            checks.append(
                f"eddy's services {eddy:,.1f} µs CPU/event (target ≤ 250): {'PASS' if eddy <= 250 else 'FAIL'}"
            )
        out += [f"kafka, {run.rate:,.0f}/s, {run.seconds:.0f} s: {c}" for c in checks]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    parser.add_argument("--rate", type=float, action="append", help="events/s of the demo feed; repeatable")
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window per broker and rate")
    parser.add_argument("--baseline-seconds", type=float, default=20.0, help="the one-hop baseline beside the stack")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument(
        "--drift-at", type=int, default=NO_DRIFT, help="demo event of the concept drift (default: none in the run)"
    )
    parser.add_argument("--hops", action="store_true", help="also time each hop with taps on the topics")
    parser.add_argument("--fetch-wait-ms", type=int, default=0, help="fetch.wait.max.ms (0: the stack's default)")
    parser.add_argument("--env", action="append", help="NAME=VALUE for the stack's services (repeatable)")
    args = parser.parse_args()
    brokers = broker_kinds(args.broker)
    runs = []
    # Brokers alternate at each rate, so that the two runs being compared are minutes apart.
    for rate in args.rate or [500.0]:
        for broker in brokers:
            try:
                run = run_one(broker, rate, args)
            except StackDidNotStart as exc:
                print(f"{exc}; trying once more", flush=True)
                run = run_one(broker, rate, args)
            print(f"done: {broker} at {rate:,.0f}/s (started {run.started}, load {run.load:.2f})", flush=True)
            runs.append(run)
    print(f"\nmachine: {describe()}; embedded stack (eddy up --demo --broker B); window {args.seconds:.0f} s")
    for run in runs:
        fetch = stack_fetch_wait(run.broker, args.fetch_wait_ms)
        print(
            f"{run.broker} at {run.rate:,.0f}/s: started {run.started}, load {run.load:.2f}, fetch.wait.max.ms {fetch}"
        )
    print(side_by_side(runs))
    for rate in dict.fromkeys(r.rate for r in runs):
        costs = [r.cost for r in runs if r.rate == rate and r.cost]
        print(f"\nCPU over the window at {rate:,.0f} events/s (bench readers running):")
        print(cost_table(costs))
    print("\nThe monitoring dashboard's freshness entry at the end of each window (seconds):")
    for run in runs:
        print(f"{run.broker} at {run.rate:,.0f}/s: {run.dashboard}")
    print("\nMicro-batches over the window: batches/s, mean records per batch")
    for run in runs:
        cells = ", ".join(f"{name} {per_s:,.0f}/s x {size:,.1f}" for name, (per_s, size) in sorted(run.batches.items()))
        print(f"{run.broker} at {run.rate:,.0f}/s: {cells}")
    print()
    print("\n".join(verdicts(runs)))


if __name__ == "__main__":
    main()

"""End-to-end latency of the running stack, against a raw one-hop Kafka round trip in the same run.

Starts ``eddy up --demo --rate R`` in a temporary state directory. After a warm-up
it reads ``demo.predictions`` and measures ingestion → prediction
(``predicted_at_ms - ingested_at_ms``: two Kafka hops, validation and inference),
plus inference's own processing time (``latency_ms``). The baseline produces
timestamped raw records at the same rate to a scratch topic on the same broker
and measures produce → consume, one hop, with the same client settings.

Run: ``.venv/bin/python -m bench.bench_latency [--rate 500] [--seconds 20]``. Bounded in time.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

from bench.machine import describe
from shared.contracts import load_contracts
from shared.embedded import start_tansu
from shared.kafka import consumer_config, ensure_topics, producer_config
from shared.serde import SerdeRegistry, registry_client
from shared.settings import REPO_ROOT, Settings
from shared.stack import EMBEDDED_FETCH_WAIT_MS, read_stack

# The pipeline and freshness readers time nothing themselves (the times are in the records), so they
# poll the broker gently and leave the CPU to the stack they measure.
QUIET_FETCH_WAIT_MS = 100
# Connection set-up and the first fetches are not what a hop costs.
WARMUP_S = 1.0


def percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "n/a"
    qs = statistics.quantiles(values, n=100)
    return f"p50 {qs[49]:7.1f}  p95 {qs[94]:7.1f}  p99 {qs[98]:7.1f}  (n={len(values)})"


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


def measure_freshness(settings: Settings, seconds: float) -> list[float]:
    """Per label: from its produce time to the first served prediction by a model that has learned it (ms).

    A label at offset o of ``demo.feedback`` partition p is reflected by the first snapshot whose
    ``source_offsets`` for that partition are past o; it is visible once a served prediction carries
    that snapshot's (or a later) learned count.
    """
    topics = ["demo.feedback", "demo.models", "demo.predictions"]
    consumers = [tail_from_end(settings, t, QUIET_FETCH_WAIT_MS) for t in topics]
    registry = serdes(settings)
    labels: list[tuple[int, int, float]] = []  # partition, offset, produced at (ms)
    snapshots: list[tuple[int, dict[str, int]]] = []  # learned count, source offsets
    first_served: dict[int, float] = {}  # learned count -> first predicted_at_ms
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
                    snapshots.append((value["learned_count"], value["source_offsets"]))
                elif topic == "demo.predictions" and value["served"]:
                    learned = value["model_learned"]
                    first_served.setdefault(learned, float(value["predicted_at_ms"]))
    for consumer in consumers:
        consumer.close()
    served = sorted(first_served.items())
    freshness = []
    for partition, offset, produced in labels:
        key = f"demo.feedback:{partition}"
        learned = next((n for n, offsets in snapshots if offsets.get(key, 0) > offset), None)
        if learned is None:
            continue  # not yet in a snapshot when the window closed
        visible = next((at for n, at in served if n >= learned), None)
        if visible is not None:
            freshness.append(visible - produced)
    return freshness


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--fetch-wait-ms", type=int, default=0, help="fetch.wait.max.ms (0: the stack's default)")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp()) / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
    env["EDDY_STATE_DIR"] = str(state)
    if args.fetch_wait_ms:
        env["EDDY_FETCH_WAIT_MAX_MS"] = str(args.fetch_wait_ms)
    fetch_wait = args.fetch_wait_ms or EMBEDDED_FETCH_WAIT_MS
    # The same one-hop baseline first on a broker with nothing else running: what a hop costs unloaded.
    broker, servers = start_tansu()
    try:
        idle = Settings(bootstrap_servers=servers, fetch_wait_max_ms=fetch_wait, session_timeout_ms=6000)
        idle_hop = measure_baseline(idle, args.rate, min(args.seconds, 10.0))
    finally:
        broker.terminate()
        broker.wait(10)
    up = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "up", "--demo", "--rate", str(args.rate), "--label-delay", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not (read_stack(state) or {}).get("ready") and time.monotonic() < deadline:
            time.sleep(0.2)
        stack = read_stack(state)
        if not stack or not stack.get("ready"):
            raise SystemExit("the stack did not start")
        # The stack's own client settings, so that the baseline hop is measured as the services consume.
        settings = Settings(
            bootstrap_servers=stack["bootstrap_servers"],
            schema_registry_url=stack["schema_registry_url"],
            fetch_wait_max_ms=fetch_wait,
            session_timeout_ms=6000,
        )
        time.sleep(args.warmup)
        fresh: list[float] = []
        freshness = threading.Thread(target=lambda: fresh.extend(measure_freshness(settings, args.seconds)))
        freshness.start()
        e2e, processing = measure_pipeline(settings, args.seconds)
        freshness.join(args.seconds + 30)
        baseline = measure_baseline(settings, args.rate, args.seconds)
        print(
            f"machine: {describe()}; embedded stack; demo feed at {args.rate:.0f} events/s; "
            f"fetch.wait.max.ms={fetch_wait}"
        )
        print(f"baseline, one hop, idle broker, no stack (ms):    {percentiles(idle_hop)}")
        print(f"baseline, raw produce -> consume, one hop (ms):   {percentiles(baseline)}")
        print(f"eddy, ingestion -> prediction, two hops (ms):     {percentiles(e2e)}")
        print(f"eddy, inference processing per batch (ms):        {percentiles(processing)}")
        print(f"freshness, label produced -> served by a model that learned it (ms): {percentiles(fresh)}")
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)


if __name__ == "__main__":
    main()

"""Throughput of eddy's data path on a local broker, against a raw-bytes baseline in the same run.

The broker is Tansu (embedded) or Apache Kafka (``--broker tansu|kafka|both``; repeat ``--broker``
for several); each broker gets a fresh broker and schema registry, and the results are printed side by
side.

Stages, each consuming N records already in a topic and producing N:

- baseline: confluent-kafka consume -> produce of raw bytes (what the broker and client can do);
- validation of a 10-feature stream (bench/streams/bench10.yaml), as the service runs it: StreamLoop with the
  native fast lane forwarding valid records undecoded; then with the lane off (Avro decode + contract check in
  Python), with both codecs;
- inference: StreamLoop + Avro decode + predict_proba_many (StandardScaler | LogisticRegression) + encode.

Run: ``.venv/bin/python -m bench.bench_pipeline [--records 50000] [--broker tansu --broker kafka]``.
Bounded in count and time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import StreamContract, load_contracts
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import consumer_config, ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.ml.models import build_estimator, class_key
from eddy.runtime.loop import FastLane, Handler, StreamLoop
from eddy.services.inference.handlers import PredictBatch, fresh_models
from eddy.services.validation.fastlane import NATIVE, FastValidation
from eddy.services.validation.handlers import ValidateBatch
from eddy.stack.brokers import start_broker
from eddy.stack.embedded import free_port
from eddy.stack.up import wait_http

from bench.bench_cost import broker_kinds
from bench.machine import describe

TIME_LIMIT_S = 120.0
STREAM = "bench10"
REGIONS = ("north", "south", "east", "west")


# Event times start at the run: the topics are created with their family's time retention, and on Apache
# Kafka records stamped in 2023 were deleted by it in the middle of a run (Tansu has no retention).
EPOCH_MS = int(time.time() * 1000)


def bench_event(i: int) -> dict[str, object]:
    """A valid event of the 10-feature bench stream."""
    numbers = {f"f{k}": float((i * (k + 3)) % 50) for k in range(8)}
    return {
        "event_id": f"b{i}",
        "event_time_ms": EPOCH_MS + i,
        **numbers,
        "region": REGIONS[i % 4],
        "tier": "gold",
    }


REGISTRY = [sys.executable, "-m", "eddy.services.schema_registry", "--host", "127.0.0.1"]


@contextmanager
def bench_stack(stream: str = STREAM, broker_kind: str = "tansu") -> Iterator[Settings]:
    """A fresh local broker (Tansu or Apache Kafka) and schema registry for a bench stream; stopped on exit."""
    broker = start_broker(broker_kind, Path(tempfile.mkdtemp(prefix=f"eddy-bench-{broker_kind}-")))
    servers = broker.bootstrap_servers
    port = free_port()
    registry = subprocess.Popen(
        [*REGISTRY, "--port", str(port), "--data-dir", str(Path(tempfile.mkdtemp()) / "sr")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/subjects", 30)
        yield Settings(
            bootstrap_servers=servers,
            schema_registry_url=url,
            session_timeout_ms=6000,
            streams=(stream,),
            contracts_dir=REPO_ROOT / "bench" / "streams",
        )
    finally:
        registry.terminate()
        registry.wait(10)
        broker.stop()


def count_topic(settings: Settings, topic: str, expect: int, skip: int = 0) -> float:
    """Seconds from record ``skip + 1`` to record ``expect`` of ``topic``: throughput without group-join time."""
    consumer = Consumer(consumer_config(settings, f"count-{uuid.uuid4().hex[:6]}"))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen, first = 0, None
    deadline = time.perf_counter() + TIME_LIMIT_S
    while seen < expect and time.perf_counter() < deadline:
        batch = [m for m in consumer.consume(5000, 0.05) if not m.error()]
        seen += len(batch)
        if seen > skip and first is None:
            first = time.perf_counter()
    consumer.close()
    if seen < expect:
        raise RuntimeError(f"only {seen} of {expect} records reached {topic} within {TIME_LIMIT_S:.0f}s")
    return time.perf_counter() - (first or time.perf_counter())


def run_baseline(settings: Settings, source: str, sink: str, n: int, skip: int = 0) -> float:
    """A bare passthrough: consume, produce the same bytes, commit asynchronously; no per-batch flush."""
    consumer = Consumer(consumer_config(settings, f"raw-{uuid.uuid4().hex[:6]}"))
    producer = Producer(producer_config(settings))
    consumer.subscribe([source])
    thread_done = threading.Event()

    def relay() -> None:
        done = 0
        deadline = time.perf_counter() + TIME_LIMIT_S
        while done < n and time.perf_counter() < deadline:
            batch = consumer.consume(500, 0.05)
            for m in batch:
                if not m.error():
                    producer.produce(sink, m.value(), m.key())
                    done += 1
            producer.poll(0)
            if batch:
                consumer.commit(asynchronous=True)
        producer.flush(30)
        thread_done.set()

    thread = threading.Thread(target=relay)
    thread.start()
    elapsed = count_topic(settings, sink, skip + n, skip)
    thread.join(60)
    consumer.close()
    return n / elapsed


def bench_loop(
    settings: Settings, serdes: SerdeRegistry, source: str, handler: Handler, fast_lane: FastLane | None = None
) -> StreamLoop:
    """eddy's StreamLoop on ``source`` in a consumer group of its own, as a service would run it."""
    return StreamLoop(
        fast_lane=fast_lane,
        service="bench",
        consumer=Consumer(consumer_config(settings, f"loop-{uuid.uuid4().hex[:6]}")),
        producer=ConfirmedProducer(producer_config(settings)),
        serdes=serdes,
        topics=[source],
        handler=handler,
    )


def run_loop(
    settings: Settings,
    serdes: SerdeRegistry,
    source: str,
    handler: Handler,
    n: int,
    sink: str,
    skip: int = 0,
    fast_lane: FastLane | None = None,
) -> float:
    loop = bench_loop(settings, serdes, source, handler, fast_lane)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    elapsed = count_topic(settings, sink, skip + n, skip)
    stop.set()
    thread.join(30)
    return n / elapsed


def run_naive(
    settings: Settings, serdes: SerdeRegistry, source: str, sink: str, contract: StreamContract, limit: int, flush: bool
) -> tuple[float, int]:
    """The textbook per-message loop: poll one, decode, ``predict_proba_one``, encode, produce one.

    With ``flush`` each prediction is flushed before the next message is read (at-least-once, one record at a
    time); without, the producer batches in the background. Returns (records/s, records) over at most ``limit``
    records or 20 s, whichever comes first.
    """
    consumer = Consumer(consumer_config(settings, f"naive-{uuid.uuid4().hex[:6]}"))
    producer = Producer(producer_config(settings))
    consumer.subscribe([source])
    # Written to a topic of its own, with the predictions topic's schema.
    decoder, encoder = serdes.for_topic(source), serdes.for_topic(StreamTopics(STREAM).predictions)
    spec = contract.champion
    model = build_estimator(spec)
    done, started = 0, 0.0
    deadline = time.perf_counter() + TIME_LIMIT_S
    while done < limit and time.perf_counter() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        if not started:
            started = time.perf_counter()
            deadline = min(deadline, started + 20)
        event = decoder.decode(msg.value())
        proba = model.predict_proba_one({name: event.get(name) for name in spec.features})
        prediction = {
            "event_id": event["event_id"],
            "stream": STREAM,
            "model_name": spec.name,
            "model_version": 1,
            "model_learned": 0,
            "served": True,
            "prediction": max(proba, key=proba.get) if proba else None,
            "probabilities": {class_key(c): float(p) for c, p in proba.items()} or None,
            "features": {name: event.get(name) for name in spec.features},
            "event_time_ms": event["event_time_ms"],
            "predicted_at_ms": int(time.time() * 1000),
            "latency_ms": 0.0,
            "ingested_at_ms": None,
            "source_partition": msg.partition(),
            "source_offset": msg.offset(),
        }
        producer.produce(sink, encoder.encode(prediction), msg.key())
        if flush:
            producer.flush(10)
        else:
            producer.poll(0)
        done += 1
    producer.flush(30)
    elapsed = time.perf_counter() - started
    consumer.close()
    return done / elapsed, done


@dataclass
class Results:
    """One broker's run: the interleaved baseline/validation rounds and the single-stage rates."""

    broker: str
    started: str
    raws: list[float] = field(default_factory=list)
    fasts: list[float] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    naive: dict[str, tuple[float, int]] = field(default_factory=dict)


PRODUCE = "produce Avro events (ConfirmedProducer + serde)"
PYTHON = "validation, lane off: fastavro decode + check"
CONFLUENT = "validation, lane off, confluent codec"
INFERENCE = "inference (StreamLoop, decode+predict+encode)"
NAIVE_FLUSH = "naive per message, Confluent serde, flush each"
NAIVE_ASYNC = "naive per message, fast codec, no flush"


def run_all(broker: str, n: int, rounds: int) -> Results:
    results = Results(broker, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    with bench_stack(broker_kind=broker) as settings:
        contracts = load_contracts(settings.contracts_dir, (STREAM,))
        topics = StreamTopics(STREAM)
        ensure_topics(settings, [*topics.all(), "bench.raw-out", "bench.naive-out"])
        serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
        serde = serdes.for_topic(topics.events)
        producer = ConfirmedProducer(producer_config(settings))
        started = time.perf_counter()
        for i in range(n):
            e = bench_event(i)
            producer.produce(topics.events, serde.encode(e), str(e["event_id"]).encode())
        producer.confirm()
        results.stages[PRODUCE] = n / (time.perf_counter() - started)

        # Each run writes after the earlier runs' records; its clock starts at its own first record.
        for r in range(rounds):
            results.raws.append(run_baseline(settings, topics.events, "bench.raw-out", n, r * n))
            handler = ValidateBatch(contracts)
            lane = FastValidation(handler, {topics.events: serdes.schema_id(topics.events)})
            if not lane.streams:
                print(f"WARNING: the fast lane is off (native extension built: {NATIVE})")
            results.fasts.append(run_loop(settings, serdes, topics.events, handler, n, topics.validated, r * n, lane))
        done = rounds * n
        results.stages[PYTHON] = run_loop(
            settings, serdes, topics.events, ValidateBatch(contracts), n, topics.validated, done
        )
        reference = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts, codec="confluent")
        results.stages[CONFLUENT] = run_loop(
            settings, reference, topics.events, ValidateBatch(contracts), n, topics.validated, done + n
        )
        models = fresh_models(contracts)
        results.stages[INFERENCE] = run_loop(
            settings, serdes, topics.validated, PredictBatch(contracts, models), n, topics.predictions
        )
        contract = contracts[STREAM]
        results.naive[NAIVE_FLUSH] = run_naive(
            settings, reference, topics.validated, "bench.naive-out", contract, n, flush=True
        )
        results.naive[NAIVE_ASYNC] = run_naive(
            settings, serdes, topics.validated, "bench.naive-out", contract, n, flush=False
        )
    return results


def report(all_results: list[Results], n: int, rounds: int) -> None:
    """Rounds per broker, then every stage with the brokers side by side."""
    print(f"machine: {describe()}")
    print(f"records: {n} per run; {rounds} rounds of baseline then fast-lane validation")
    for res in all_results:
        print(f"\nbroker {res.broker} (started {res.started})")
        print(f"{'round':<8} {'baseline/s':>12} {'validation/s':>14} {'ratio':>7}")
        for r, (raw, fast) in enumerate(zip(res.raws, res.fasts, strict=True), 1):
            print(f"{r:<8} {raw:>12,.0f} {fast:>14,.0f} {fast / raw:>7.0%}")
        ratio = median(f / b for f, b in zip(res.fasts, res.raws, strict=True))
        print(f"{'median':<8} {median(res.raws):>12,.0f} {median(res.fasts):>14,.0f} {ratio:>7.0%}")
    print()
    print("| stage | " + " | ".join(f"{r.broker} records/s" for r in all_results) + " |")
    print("|---|" + "---:|" * len(all_results))
    print("| baseline passthrough (median) | " + " | ".join(f"{median(r.raws):,.0f}" for r in all_results) + " |")
    print("| validation, fast lane (median) | " + " | ".join(f"{median(r.fasts):,.0f}" for r in all_results) + " |")
    ratios = [median(f / b for f, b in zip(r.fasts, r.raws, strict=True)) for r in all_results]
    print("| validation / baseline (median) | " + " | ".join(f"{x:.0%}" for x in ratios) + " |")
    for stage in (PRODUCE, PYTHON, CONFLUENT, INFERENCE):
        print(f"| {stage} | " + " | ".join(f"{r.stages[stage]:,.0f}" for r in all_results) + " |")
    for label in (NAIVE_FLUSH, NAIVE_ASYNC):
        cells = [
            f"{r.naive[label][0]:,.0f} ({r.naive[label][1]} records; inference is "
            f"{r.stages[INFERENCE] / r.naive[label][0]:.1f}x)"
            if r.naive[label][1]
            else "no records read"
            for r in all_results
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3, help="baseline / fast-lane pairs, interleaved")
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    args = parser.parse_args()
    all_results = [run_all(broker, args.records, args.rounds) for broker in broker_kinds(args.broker)]
    report(all_results, args.records, args.rounds)


if __name__ == "__main__":
    main()

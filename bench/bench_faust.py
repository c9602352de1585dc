"""Throughput of a faust agent on eddy's topics (``eddy.integrations.faust``), against eddy's own loop in the same run.

On a fresh broker (Tansu or Apache Kafka; ``--broker``) and schema registry, N predictions of the bench stream
(``bench10.predictions``, lz4-compressed by eddy's producer as the services write them) are read, in rounds, by:

- eddy's loop, consume: ``StreamLoop`` decoding every record with eddy's serde, its handler counting them;
- faust, consume: a faust worker whose agent iterates the topic record by record (faust's idiom) through
  ``EddyCodec``, counting them; and the same agent on the raw bytes, to show what the codec costs in it;
- eddy's loop, relay: the same loop handing every record on to ``backtest10.predictions`` (encode + produce);
- faust, relay: the agent sending every record on with ``await topic.send`` to the same topic.

Each reader is a consumer group of its own starting at the beginning, and its clock runs from its first record
to its N-th, so group joins and faust's start-up are not counted; a relay's clock is its output's, read back as
``bench.bench_pipeline`` does. Each faust worker is a process of its own (faust owns its event loop and
signals), with its agent's default concurrency of one.

Run: ``.venv/bin/python -m bench.bench_faust [--records 20000] [--rounds 3] [--broker tansu --broker kafka]``.
Needs ``pip install 'eddy[faust]'``. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from confluent_kafka import Consumer
from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import load_contracts
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import consumer_config, ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.runtime.loop import BatchResult, InRecord, OutRecord, StreamLoop

from bench.bench_cost import broker_kinds
from bench.bench_pipeline import TIME_LIMIT_S, bench_stack, count_topic, run_loop
from bench.machine import describe

STREAM = "bench10"
# The relays write to another stream's predictions topic: the same schema, a topic of its own.
SINK_STREAM = "backtest10"
SOURCE = StreamTopics(STREAM).predictions
SINK = StreamTopics(SINK_STREAM).predictions

EDDY_CONSUME = "eddy loop, consume (decode)"
FAUST_CONSUME = "faust agent, consume (decode)"
FAUST_RAW = "faust agent, consume raw bytes (no decode)"
EDDY_RELAY = "eddy loop, relay (decode + encode + produce)"
FAUST_RELAY = "faust agent, relay (decode + encode + send)"
STAGES = (EDDY_CONSUME, FAUST_CONSUME, FAUST_RAW, EDDY_RELAY, FAUST_RELAY)


def bench_prediction(i: int) -> dict[str, Any]:
    """A served prediction of the bench stream, with the stream's ten features."""
    features: dict[str, Any] = {f"f{k}": float((i * (k + 3)) % 50) for k in range(8)}
    features |= {"region": ("north", "south", "east", "west")[i % 4], "tier": "gold"}
    now = int(time.time() * 1000)
    return {
        "event_id": f"b{i}",
        "stream": STREAM,
        "model_name": "default",
        "model_version": 1,
        "model_learned": i,
        "served": True,
        "prediction": i % 3 == 0,
        "probabilities": {"true": 0.4, "false": 0.6},
        "features": features,
        "event_time_ms": now,
        "predicted_at_ms": now,
        "latency_ms": 1.0,
        "ingested_at_ms": now,
        "source_partition": i % 4,
        "source_offset": i,
        "segment": features["region"],
    }


def produce_predictions(settings: Settings, serdes: SerdeRegistry, n: int) -> None:
    serde = serdes.for_topic(SOURCE)
    producer = ConfirmedProducer(producer_config(settings))
    for i in range(n):
        value = bench_prediction(i)
        producer.produce(SOURCE, serde.encode(value), value["event_id"].encode())
    producer.confirm()


def eddy_consume(settings: Settings, serdes: SerdeRegistry, n: int) -> float:
    """Records/s of eddy's loop decoding ``n`` records of SOURCE, first record to last, handing nothing on."""
    # The clock starts once the first batch is in: the records after it, over the time they took.
    started: list[tuple[float, int]] = []
    ended: list[float] = []
    counted = [0]
    done = threading.Event()

    def count(records: Sequence[InRecord]) -> BatchResult:
        counted[0] += len(records)
        if not started:
            started.append((time.perf_counter(), counted[0]))
        elif counted[0] >= n and not ended:
            ended.append(time.perf_counter())
            done.set()
        return BatchResult()

    loop = StreamLoop(
        service="bench",
        consumer=Consumer(consumer_config(settings, f"loop-{uuid.uuid4().hex[:6]}")),
        producer=ConfirmedProducer(producer_config(settings)),
        serdes=serdes,
        topics=[SOURCE],
        handler=count,
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,))
    thread.start()
    finished = done.wait(TIME_LIMIT_S)
    stop.set()
    thread.join(30)
    if not finished:
        raise RuntimeError(f"eddy's loop read {counted[0]} of {n} records within {TIME_LIMIT_S:.0f}s")
    return (counted[0] - started[0][1]) / (ended[0] - started[0][0])


def relay(records: Sequence[InRecord]) -> BatchResult:
    return BatchResult(outputs=[OutRecord(SINK, r.key, r.value) for r in records])


def faust_worker(settings: Settings, mode: str, n: int) -> tuple[subprocess.Popen[str], Path]:
    """``python -m bench.bench_faust --worker MODE``: a faust worker in a consumer group of its own."""
    workdir = Path(tempfile.mkdtemp(prefix="eddy-bench-faust-"))
    env = {**os.environ, **settings.kafka_env(), "EDDY_STREAMS": f"{STREAM},{SINK_STREAM}"}
    env["EDDY_GROUP_PREFIX"] = f"bench-{uuid.uuid4().hex[:6]}"
    argv = [sys.executable, "-m", "bench.bench_faust", "--worker", mode, "--records", str(n)]
    with open(workdir / "worker.log", "w") as log:
        proc = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    return proc, workdir


def stop_worker(proc: subprocess.Popen[str], workdir: Path, ok: bool) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if not ok:
        print((workdir / "worker.log").read_text()[-3000:])


def faust_consume(settings: Settings, n: int, mode: str = "consume") -> float:
    """Records/s of a faust agent reading ``n`` records of SOURCE, timed by the worker from its first record.

    ``mode`` ``consume`` decodes them with ``EddyCodec``; ``raw`` takes their bytes as they are.
    """
    proc, workdir = faust_worker(settings, mode, n)
    assert proc.stdout is not None
    result: dict[str, float] | None = None
    deadline = time.monotonic() + TIME_LIMIT_S
    try:
        while result is None and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.5)[0]:
                line = proc.stdout.readline()
                if line.startswith("{"):
                    result = json.loads(line)
    finally:
        stop_worker(proc, workdir, result is not None)
    if result is None:
        raise RuntimeError(f"the faust worker did not read {n} records within {TIME_LIMIT_S:.0f}s")
    return (n - 1) / result["seconds"]


def faust_relay(settings: Settings, n: int, skip: int) -> float:
    """Records/s of a faust agent sending ``n`` records of SOURCE on to SINK, timed at SINK."""
    proc, workdir = faust_worker(settings, "relay", n)
    ok = False
    try:
        elapsed = count_topic(settings, SINK, skip + n, skip)
        ok = True
    finally:
        stop_worker(proc, workdir, ok)
    return n / elapsed


def worker_main(mode: str, n: int) -> None:
    """The faust side, in its own process: an agent on SOURCE that counts (and relays) ``n`` records."""
    from eddy.integrations.faust import eddy_app, eddy_topic

    settings = Settings.from_env()
    app = eddy_app(f"{settings.group_prefix}-faust", settings, web_enabled=False)
    if mode == "raw":
        source = app.topic(SOURCE, key_type=str, key_serializer="raw", value_type=bytes, value_serializer="raw")
    else:
        source = eddy_topic(app, SOURCE, settings)
    sink = eddy_topic(app, SINK, settings)
    output = sys.stdout  # faust's worker turns later prints into log lines

    @app.agent(source)
    async def agent(records: Any) -> None:
        seen, first = 0, 0.0
        async for key, value in records.items():
            if mode == "relay":
                await sink.send(key=key, value=value)
            if not seen:
                first = time.perf_counter()
            seen += 1
            if seen == n:
                print(json.dumps({"seconds": time.perf_counter() - first}), file=output, flush=True)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


@dataclass
class Results:
    broker: str
    started: str
    rates: dict[str, list[float]] = field(default_factory=lambda: {stage: [] for stage in STAGES})


def run_all(broker: str, n: int, rounds: int) -> Results:
    results = Results(broker, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    with bench_stack(STREAM, broker) as stack:
        settings = dataclasses.replace(stack, streams=(STREAM, SINK_STREAM))
        ensure_topics(settings, [SOURCE, SINK])
        contracts = load_contracts(settings.contracts_dir, settings.streams)
        serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
        serdes.register([SOURCE, SINK])
        produce_predictions(settings, serdes, n)
        # Interleaved, so that a slower or faster stretch of the machine falls on both.
        for r in range(rounds):
            results.rates[EDDY_CONSUME].append(eddy_consume(settings, serdes, n))
            results.rates[FAUST_CONSUME].append(faust_consume(settings, n))
            results.rates[FAUST_RAW].append(faust_consume(settings, n, "raw"))
            results.rates[EDDY_RELAY].append(run_loop(settings, serdes, SOURCE, relay, n, SINK, 2 * r * n))
            results.rates[FAUST_RELAY].append(faust_relay(settings, n, (2 * r + 1) * n))
            print(f"{broker} round {r + 1}: " + ", ".join(f"{s}: {results.rates[s][-1]:,.0f}/s" for s in STAGES))
    return results


def report(all_results: list[Results], n: int, rounds: int) -> None:
    print(f"machine: {describe()}")
    print(f"records: {n} predictions per run, {rounds} interleaved rounds; medians")
    print()
    print("| stage | " + " | ".join(f"{r.broker} records/s" for r in all_results) + " |")
    print("|---|" + "---:|" * len(all_results))
    for stage in STAGES:
        print(f"| {stage} | " + " | ".join(f"{median(r.rates[stage]):,.0f}" for r in all_results) + " |")
    for label, faust_stage, eddy_stage in (
        ("consume", FAUST_CONSUME, EDDY_CONSUME),
        ("relay", FAUST_RELAY, EDDY_RELAY),
    ):
        ratios = [
            median(f / e for f, e in zip(r.rates[faust_stage], r.rates[eddy_stage], strict=True)) for r in all_results
        ]
        print(f"| {label}: faust / eddy loop (median of rounds) | " + " | ".join(f"{x:.1%}" for x in ratios) + " |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    parser.add_argument("--worker", choices=("consume", "raw", "relay"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker, args.records)
        return
    all_results = [run_all(broker, args.records, args.rounds) for broker in broker_kinds(args.broker)]
    report(all_results, args.records, args.rounds)


if __name__ == "__main__":
    main()

"""Backtest throughput: history read from the embedded broker, predicted and learned in event-time order.

Scenario (issue 8's target: >= 100,000 events/s for scaler + logistic regression on 10 features, with
the Kafka read counted): N events of the ``backtest10`` stream on ``S.validated`` and their labels on
``S.feedback``, each label arriving 0-2 s after its event (observed delays). Measured in the same run:

- eddy: ``load_history`` (read both topics to their end and decode) + ``run_backtest`` with the
  contract's StandardScaler | LogisticRegression (the native kernel, river's arithmetic);
- baseline: reading both topics to their end without decoding (what the broker and client allow);
- river: the same model through river's own one-at-a-time path in the engine (kernel off), and
  ``evaluate.progressive_val_score`` on the already-decoded sequence (no Kafka at all).

The baseline and eddy's path alternate for ``--rounds`` rounds (this VM is noisy: compare within a round).

    python -m bench.bench_backtest [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.backtest.engine import BacktestModel, run_backtest
from eddy.history.backtest.source import load_history, read_to_end
from eddy.kafka.client import ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.ml import linear_kernel
from eddy.ml.models import build_estimator
from river import evaluate, metrics

from bench.bench_pipeline import bench_stack
from bench.machine import describe

STREAM = "backtest10"


def produce_history(settings: Settings, serdes: SerdeRegistry, n: int) -> None:
    topics = StreamTopics(STREAM)
    ensure_topics(settings, [topics.validated, topics.feedback])
    producer = ConfirmedProducer(producer_config(settings))
    events, feedback = serdes.for_topic(topics.validated), serdes.for_topic(topics.feedback)
    draws = random.Random(8)
    weights = [draws.uniform(-1, 1) for _ in range(10)]
    for i in range(n):
        x = [draws.gauss(0, 1) for _ in range(10)]
        at = 1_700_000_000_000 + i
        key = f"b{i}".encode()
        producer.produce(
            topics.validated,
            events.encode({"event_id": f"b{i}", "event_time_ms": at, **{f"c{k}": v for k, v in enumerate(x)}}),
            key,
        )
        label = sum(w * v for w, v in zip(weights, x, strict=True)) + draws.gauss(0, 0.3) > 0
        value = {"event_id": f"b{i}", "label": label, "label_time_ms": at + draws.randint(0, 2000), "source": "bench"}
        producer.produce(topics.feedback, feedback.encode(value), key)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.confirm(120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with bench_stack(STREAM) as settings:
        contracts = load_contracts(settings.contracts_dir, settings.streams)
        contract = contracts[STREAM]
        serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
        produce_history(settings, serdes, args.events)
        topics = StreamTopics(STREAM)

        rounds: list[tuple[float, float, float]] = []  # (bare read, load_history, read + engine) seconds
        for _ in range(args.rounds):
            began = time.perf_counter()
            raw = sum(len(batch) for batch in read_to_end(settings, [topics.validated, topics.feedback]))
            raw_s = time.perf_counter() - began

            began = time.perf_counter()
            history = load_history(settings, contract, serdes)
            read_s = time.perf_counter() - began
            result = run_backtest(contract, history.events, history.labels, [BacktestModel.fresh(contract.champion)])
            eddy_s = time.perf_counter() - began
            read = (len(history.events), len(history.labels), len(result.table), history.skipped)
            assert len(history.events) == args.events and len(result.table) == args.events, read
            rounds.append((raw_s, read_s, eddy_s))

        subset = history.events[: min(50_000, args.events)]
        native, linear_kernel.native = linear_kernel.native, None
        try:
            began = time.perf_counter()
            slow = run_backtest(contract, subset, history.labels, [BacktestModel.fresh(contract.champion)])
            river_engine_s = time.perf_counter() - began
        finally:
            linear_kernel.native = native
        fast = run_backtest(contract, subset, history.labels, [BacktestModel.fresh(contract.champion)])
        same = abs(fast.summary["models"][0]["final_metric"] - slow.summary["models"][0]["final_metric"])

        rows = [
            ({f: e.record[f] for f in contract.champion.features}, history.labels[e.event_id].value) for e in subset
        ]
        began = time.perf_counter()
        model = build_estimator(contract.champion)
        evaluate.progressive_val_score(rows, model, metrics.Accuracy())
        river_pvs_s = time.perf_counter() - began

    n, m = args.events, len(subset)
    print(f"machine: {describe()}; {n:,} events + {n:,} labels, backtest10 (10 features), observed delays 0-2 s")
    print(
        "| round | baseline: bare read, events/s | eddy: reading and decoding (load_history) | "
        "eddy: engine (run_backtest) | **eddy backtest: read + decode + order + predict/learn + metrics** |"
    )
    print("|---|---:|---:|---:|---:|")
    rates = [(n / raw_s, n / read_s, n / (eddy_s - read_s), n / eddy_s) for raw_s, read_s, eddy_s in rounds]
    for k, rate in enumerate(rates, 1):
        print(f"| {k} | " + " | ".join(f"{r:,.0f}" for r in rate) + " |")
    medians = [statistics.median(r[i] for r in rates) for i in range(4)]
    print(f"| median | {medians[0]:,.0f} | {medians[1]:,.0f} | {medians[2]:,.0f} | **{medians[3]:,.0f}** |")
    print()
    print("| path, no Kafka | events | seconds | events/s |")
    print("|---|---:|---:|---:|")
    river_rate = m / river_engine_s
    print(f"| engine on river's own path (kernel off), no Kafka | {m:,} | {river_engine_s:.2f} | {river_rate:,.0f} |")
    print(f"| river progressive_val_score (no delay), no Kafka | {m:,} | {river_pvs_s:.2f} | {m / river_pvs_s:,.0f} |")
    print(f"kernel vs river path, final accuracy difference on {m:,} events: {same:.2e}; raw records read: {raw:,}")


if __name__ == "__main__":
    main()

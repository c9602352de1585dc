"""Monitoring throughput: labeled examples per second through the monitoring service's loop and handler.

A backlog of labeled examples of the 10-feature bench stream (two models, four regions, so
quality is kept per model and per segment) is written to ``bench10.labeled``; then, on the same
broker in the same run:

- baseline: eddy's StreamLoop with a handler that only counts (consume + decode + commit);
- monitoring: the same loop with the monitoring service's handler (quality windows, concept
  drift, de-duplication) and its ticks (metrics over the windows, the dashboard document).

Run: ``.venv/bin/python -m bench.bench_monitoring [--records 200000]``. Bounded in time.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections.abc import Callable, Sequence

from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.runtime.loop import BatchResult, InRecord
from eddy.services.monitoring.handlers import Monitor

from bench.bench_pipeline import REGIONS, STREAM, TIME_LIMIT_S, bench_loop, bench_stack
from bench.machine import describe


def labeled_example(i: int, rng: random.Random) -> dict[str, object]:
    p = rng.random()
    return {
        "event_id": f"ev-{i // 2}",
        "stream": STREAM,
        "model_name": ("default", "challenger")[i % 2],
        "model_version": 1,
        "model_learned": i,
        "prediction": p > 0.5,
        "probabilities": {"true": p, "false": 1 - p},
        "features": {f"f{k}": rng.random() * 100 for k in range(6)},
        "label": rng.random() < p,
        "event_time_ms": 1_700_000_000_000 + i,
        "predicted_at_ms": 1_700_000_000_010 + i,
        "label_time_ms": 1_700_000_001_000 + i,
        "joined_at_ms": 1_700_000_001_001 + i,
        "segment": rng.choice(REGIONS),
    }


def run_counted(
    settings: Settings, serdes: SerdeRegistry, topic: str, n: int, handler: Callable, tick: Callable
) -> float:
    """Records per second from the first batch until ``n`` records were handled."""
    handled, first, last = 0, 0.0, 0.0
    done = threading.Event()

    def counting(records: Sequence[InRecord]) -> BatchResult:
        nonlocal handled, first, last
        if not first:
            first = time.perf_counter()
        result: BatchResult = handler(records)
        tick()
        handled += len(records)
        if handled >= n and not done.is_set():
            last = time.perf_counter()
            done.set()
        return result

    loop = bench_loop(settings, serdes, topic, counting)
    thread = threading.Thread(target=loop.run, args=(done,))
    thread.start()
    finished = done.wait(TIME_LIMIT_S)
    thread.join(30)
    if not finished:
        raise RuntimeError(f"only {handled} of {n} records handled within {TIME_LIMIT_S:.0f}s")
    return n / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    n = args.records
    with bench_stack() as settings:
        contracts = load_contracts(settings.contracts_dir, (STREAM,))
        topics = StreamTopics(STREAM)
        ensure_topics(settings, topics.all())
        serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
        serde = serdes.for_topic(topics.labeled)
        producer = ConfirmedProducer(producer_config(settings))
        rng = random.Random(7)
        for i in range(n):
            value = labeled_example(i, rng)
            producer.produce(topics.labeled, serde.encode(value), str(value["event_id"]).encode())
        producer.confirm()
        baselines, monitored = [], []
        for _ in range(args.rounds):
            baselines.append(run_counted(settings, serdes, topics.labeled, n, lambda r: BatchResult(), lambda: None))
            monitor = Monitor(contracts[STREAM])
            monitored.append(run_counted(settings, serdes, topics.labeled, n, monitor, monitor.maybe_tick))
        print(f"machine: {describe()}, broker Tansu (embedded); {n:,} labeled examples per run (2 models, 4 segments)")
        print(f"{'round':<7} {'loop only/s':>12} {'monitoring/s':>13} {'ratio':>6}")
        for r, (base, mon) in enumerate(zip(baselines, monitored, strict=True), 1):
            print(f"{r:<7} {base:>12,.0f} {mon:>13,.0f} {mon / base:>6.0%}")


if __name__ == "__main__":
    main()

"""Tracing overhead (issue 24): inference throughput with OpenTelemetry tracing off and on, in the same run.

The inference stage of ``bench_pipeline`` (StreamLoop + Avro decode + predict_proba_many + encode, 10-feature
stream, StandardScaler | LogisticRegression) reads the same N validated records in every run, each carrying a
``traceparent`` as traced validation batches would write them (one upstream context per ``--upstream-batch``
records). After a warm-up run, ``--rounds`` rounds run each mode once, in alternating order, each run in a
consumer group of its own:

- off: no provider installed, the shipped default (the loop checks one attribute per batch);
- on: the SDK's TracerProvider with a BatchSpanProcessor, as ``EDDY_TRACING=otlp`` builds it, exporting to an
  exporter that drops the spans (so the numbers are eddy's and the SDK's cost, not a collector's): a span per
  batch, a link per upstream span naming its records, every output stamped;
- per-record (``--per-record-links``): the same with a link per record (topic, partition, offset, key as its
  attributes), the design eddy did not ship, to show what it would cost.

Each run reports its rate (records/s, wall clock, from the first output record to the last) and the CPU time
of the loop's thread per record, where tracing's work happens: on a shared machine the CPU time is the steadier
measure, since other processes slow the wall clock of every mode alike but add nothing to this thread's CPU
time. ``--in-memory`` also runs the same loop on ``eddy.testing``'s in-memory consumer and producer: no broker,
so the whole cost is the loop's.

Run: ``.venv/bin/python -m bench.bench_tracing [--records 50000] [--rounds 3] [--broker tansu]``.
Bounded in count and time (``bench_pipeline.TIME_LIMIT_S`` per run).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from statistics import median
from typing import Any

from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import StreamContract, load_contracts
from eddy.core.settings import REPO_ROOT
from eddy.core.topics import StreamTopics
from eddy.kafka.client import ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.runtime import tracing
from eddy.runtime.loop import StreamLoop
from eddy.services.inference.handlers import PredictBatch, fresh_models
from eddy.testing import InMemoryTopics, MemoryConsumer, MemoryProducer
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link

from bench.bench_cost import broker_kinds
from bench.bench_pipeline import STREAM, bench_event, bench_loop, bench_stack, count_topic
from bench.machine import describe

# What eddy ships; the per-record mode replaces tracing.links_of while it runs.
SHIPPED_LINKS = tracing.links_of


class Discard(SpanExporter):
    """Takes every span and drops it, counting them."""

    def __init__(self) -> None:
        self.spans = 0
        self.links = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        self.links += sum(len(span.links) for span in spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def traced(exporter: Discard) -> TracerProvider:
    """A provider as ``eddy.runtime.tracing.configure`` builds one, exporting to ``exporter``."""
    provider = TracerProvider(span_limits=SpanLimits(max_links=tracing.DEFAULT_MAX_LINKS))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def link_per_record(messages: Sequence[Any], propagator: Any) -> list[Link]:
    """The alternative to ``tracing.links_of``: a link per record, its topic, partition, offset and key on it."""
    links: list[Link] = []
    for grouped in SHIPPED_LINKS(messages, propagator):
        attributes = grouped.attributes or {}
        keys, offsets = attributes["eddy.record_keys"], attributes["eddy.record_offsets"]
        for key, offset in zip(keys, offsets, strict=True):  # type: ignore[call-overload]
            one = {
                "messaging.destination.name": attributes["messaging.destination.name"],
                "messaging.destination.partition.id": attributes["messaging.destination.partition.id"],
                "messaging.kafka.offset": offset,
                "messaging.kafka.message.key": key,
            }
            links.append(Link(grouped.context, one))
    return links


@contextmanager
def tracing_as(mode: str) -> Iterator[Discard]:
    """Tracing ``off``, ``on`` (as shipped) or ``per-record`` (a link per record) for the loops built inside."""
    exporter = Discard()
    provider = traced(exporter) if mode != "off" else None
    if provider is not None:
        tracing.install(provider)
    if mode == "per-record":
        tracing.links_of = link_per_record  # type: ignore[assignment]
    try:
        yield exporter
    finally:
        tracing.links_of = SHIPPED_LINKS
        tracing.uninstall()
        if provider is not None:
            provider.shutdown()


def upstream_headers(i: int, per_batch: int) -> list[tuple[str, bytes]]:
    """The traceparent a traced validation batch would have stamped on record ``i``."""
    batch = i // per_batch + 1
    return [("traceparent", f"00-{batch:032x}-{batch:016x}-01".encode())]


# One run of a mode: records/s (wall clock) and the loop thread's CPU µs per record.
Measure = tuple[float, float]


def in_memory(contracts: dict[str, StreamContract], n: int, per_batch: int, mode: str) -> tuple[Measure, Discard]:
    """The inference loop over ``n`` in-memory records, in this thread: no broker, so the cost is all the loop's."""
    topics = InMemoryTopics(contracts, REPO_ROOT / "schemas")
    source = StreamTopics(STREAM).validated
    serde = topics.serdes.for_topic(source)
    for i in range(n):
        e = bench_event(i)
        topics.append(source, serde.encode(e), str(e["event_id"]).encode(), upstream_headers(i, per_batch), 1)
    with tracing_as(mode) as exporter:
        drained = threading.Event()
        loop = StreamLoop(
            service="inference",
            consumer=MemoryConsumer(topics, "inference", drained),  # type: ignore[arg-type]
            producer=MemoryProducer(topics),  # type: ignore[arg-type]
            serdes=topics.serdes,
            topics=[source],
            handler=PredictBatch(contracts, fresh_models(contracts)),
            batch_timeout_s=0.0,
        )
        wall, cpu = time.perf_counter(), time.thread_time()
        loop.run(drained)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    return (n / wall, cpu / n * 1e6), exporter


def on_broker(settings: Any, serdes: SerdeRegistry, contracts: dict[str, StreamContract], n: int, skip: int) -> Measure:
    """The inference loop on the broker, in a thread of its own whose CPU time is measured."""
    topics = StreamTopics(STREAM)
    loop = bench_loop(settings, serdes, topics.validated, PredictBatch(contracts, fresh_models(contracts)))
    stop = threading.Event()
    cpu = [0.0]

    def run() -> None:
        started = time.thread_time()
        loop.run(stop)
        cpu[0] = time.thread_time() - started

    thread = threading.Thread(target=run)
    thread.start()
    elapsed = count_topic(settings, topics.predictions, skip + n, skip)
    stop.set()
    thread.join(30)
    return n / elapsed, cpu[0] / n * 1e6


def run_broker(broker: str, n: int, rounds: int, per_batch: int, modes: list[str]) -> dict[str, list[Measure]]:
    measures: dict[str, list[Measure]] = {mode: [] for mode in modes}
    with bench_stack(broker_kind=broker) as settings:
        contracts = load_contracts(settings.contracts_dir, (STREAM,))
        topics = StreamTopics(STREAM)
        ensure_topics(settings, topics.all())
        serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
        serde = serdes.for_topic(topics.validated)
        producer = ConfirmedProducer(producer_config(settings))
        for i in range(n):
            e = bench_event(i)
            producer.produce(
                topics.validated, serde.encode(e), str(e["event_id"]).encode(), upstream_headers(i, per_batch)
            )
        producer.confirm()
        # A warm-up, not counted: the client, the model, the registry, OpenTelemetry's first spans.
        with tracing_as("on"):
            on_broker(settings, serdes, contracts, n, 0)
        done = n
        for r in range(rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                with tracing_as(mode) as exporter:
                    measure = on_broker(settings, serdes, contracts, n, done)
                done += n
                measures[mode].append(measure)
                show(broker, r, mode, measure, exporter)
    return measures


def show(where: str, r: int, mode: str, measure: Measure, exporter: Discard) -> None:
    extra = f" ({exporter.spans} spans, {exporter.links} links)" if mode != "off" else ""
    print(f"  {where} round {r + 1} tracing {mode}: {measure[0]:,.0f} records/s, {measure[1]:.1f} µs CPU/record{extra}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every mode, alternating their order")
    parser.add_argument("--upstream-batch", type=int, default=500, help="input records per upstream span")
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    parser.add_argument("--in-memory", action="store_true", help="also run the loop on in-memory topics")
    parser.add_argument("--per-record-links", action="store_true", help="also time a link per record")
    args = parser.parse_args()
    modes = ["off", "on", *(["per-record"] if args.per_record_links else [])]
    print(f"machine: {describe()}")
    print(f"records: {args.records} per run, {args.rounds} rounds of {modes}, {args.upstream_batch} per upstream span")
    rows: list[tuple[str, dict[str, list[Measure]]]] = []
    if args.in_memory:
        contracts = load_contracts(REPO_ROOT / "bench" / "streams", (STREAM,))
        memory: dict[str, list[Measure]] = {mode: [] for mode in modes}
        for mode in modes:  # warm-up, not counted: first imports, first spans
            in_memory(contracts, args.records // 5, args.upstream_batch, mode)
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                measure, exporter = in_memory(contracts, args.records, args.upstream_batch, mode)
                memory[mode].append(measure)
                show("in-memory", r, mode, measure, exporter)
        rows.append(("in-memory consumer and producer", memory))
    for broker in broker_kinds(args.broker):
        rows.append((broker, run_broker(broker, args.records, args.rounds, args.upstream_batch, modes)))
    print()
    print("Medians over the rounds; CPU is the loop thread's, per record.")
    print()
    print("| inference on | tracing | records/s | vs off | µs CPU/record | vs off |")
    print("|---|---|---:|---:|---:|---:|")
    for where, measures in rows:
        off_rate = median(m[0] for m in measures["off"])
        off_cpu = median(m[1] for m in measures["off"])
        for mode in modes:
            rate, cpu = median(m[0] for m in measures[mode]), median(m[1] for m in measures[mode])
            print(f"| {where} | {mode} | {rate:,.0f} | {rate / off_rate:.0%} | {cpu:.1f} | {cpu - off_cpu:+.1f} |")


if __name__ == "__main__":
    main()

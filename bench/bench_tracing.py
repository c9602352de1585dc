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

Besides the broker runs, ``--in-memory`` also times the same loop on ``eddy.testing``'s in-memory topics: no
broker, so the CPU cost of tracing alone shows.

Run: ``.venv/bin/python -m bench.bench_tracing [--records 50000] [--rounds 3] [--broker tansu]``.
Bounded in count and time (``bench_pipeline.TIME_LIMIT_S`` per run).
"""

from __future__ import annotations

import argparse
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
from eddy.services.inference.handlers import PredictBatch, fresh_models
from eddy.testing import InMemoryTopics
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link

from bench.bench_cost import broker_kinds
from bench.bench_pipeline import STREAM, bench_event, bench_stack, run_loop
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


def timed_in_memory(contracts: dict[str, StreamContract], n: int, per_batch: int, mode: str) -> tuple[float, Discard]:
    """Records/s of the inference loop over ``n`` in-memory records: no broker, so the CPU cost alone."""
    topics = InMemoryTopics(contracts, REPO_ROOT / "schemas")
    source = StreamTopics(STREAM).validated
    serde = topics.serdes.for_topic(source)
    for i in range(n):
        e = bench_event(i)
        topics.append(source, serde.encode(e), str(e["event_id"]).encode(), upstream_headers(i, per_batch), 1)
    with tracing_as(mode) as exporter:
        started = time.perf_counter()
        topics.run("inference", [source], PredictBatch(contracts, fresh_models(contracts)))
        elapsed = time.perf_counter() - started
    return n / elapsed, exporter


def run_broker(broker: str, n: int, rounds: int, per_batch: int, modes: list[str]) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
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
        # A first run, not counted, warms the client, the model and the registry lookups.
        handler = PredictBatch(contracts, fresh_models(contracts))
        run_loop(settings, serdes, topics.validated, handler, n, topics.predictions, 0)
        done = n
        for r in range(rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                with tracing_as(mode) as exporter:
                    handler = PredictBatch(contracts, fresh_models(contracts))
                    rate = run_loop(settings, serdes, topics.validated, handler, n, topics.predictions, done)
                done += n
                rates[mode].append(rate)
                extra = f" ({exporter.spans} spans, {exporter.links} links)" if mode != "off" else ""
                print(f"  {broker} round {r + 1} tracing {mode}: {rate:,.0f} records/s{extra}", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs, alternating which goes first")
    parser.add_argument("--upstream-batch", type=int, default=500, help="input records per upstream span")
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    parser.add_argument("--in-memory", action="store_true", help="also time the loop on in-memory topics")
    parser.add_argument("--per-record-links", action="store_true", help="also time a link per record")
    args = parser.parse_args()
    modes = ["off", "on", *(["per-record"] if args.per_record_links else [])]
    print(f"machine: {describe()}")
    print(f"records: {args.records} per run, {args.rounds} rounds of {modes}, {args.upstream_batch} per upstream span")
    rows: list[tuple[str, dict[str, float]]] = []
    if args.in_memory:
        contracts = load_contracts(REPO_ROOT / "bench" / "streams", (STREAM,))
        memory: dict[str, list[float]] = {mode: [] for mode in modes}
        timed_in_memory(contracts, args.records // 5, args.upstream_batch, "off")  # warm-up, not counted
        for r in range(args.rounds):
            for mode in modes if r % 2 == 0 else modes[::-1]:
                rate, exporter = timed_in_memory(contracts, args.records, args.upstream_batch, mode)
                memory[mode].append(rate)
                extra = f" ({exporter.spans} spans, {exporter.links} links)" if mode != "off" else ""
                print(f"  in-memory round {r + 1} tracing {mode}: {rate:,.0f} records/s{extra}", flush=True)
        rows.append(("in-memory topics (CPU only)", {mode: median(memory[mode]) for mode in modes}))
    for broker in broker_kinds(args.broker):
        rates = run_broker(broker, args.records, args.rounds, args.upstream_batch, modes)
        rows.append((broker, {mode: median(rates[mode]) for mode in modes}))
    print()
    print("| inference on | " + " | ".join(f"tracing {mode}, records/s (median)" for mode in modes) + " | on / off |")
    print("|---|" + "---:|" * (len(modes) + 1))
    for where, median_rates in rows:
        cells = " | ".join(f"{median_rates[mode]:,.0f}" for mode in modes)
        ratios = ", ".join(f"{median_rates[mode] / median_rates['off']:.0%}" for mode in modes[1:])
        print(f"| {where} | {cells} | {ratios} |")


if __name__ == "__main__":
    main()

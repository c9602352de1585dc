"""Learning at scale (issue 23): labels per second through the learning service against river alone.

For each model, a fresh broker's ``S.predictions`` and ``S.feedback`` are prefilled with N joined pairs
(``bench.learning_drain``), and ``python -m eddy.services.learning`` (a subprocess: its Kafka loop, Avro decode,
join, learn, S.labeled output, checkpoints and snapshots at their default intervals) is timed from its first
learned label until it has learned them all and published a snapshot holding all of them. The baseline is river's
own ``learn_one`` loop over the same examples, in the same order, in process, in the same run; the model the
service published is checked against it (the same predictions on held-out rows, bit for bit).

Models (on 3 features, f0, f1 and f4, as the demo's 3):

- ``StandardScaler | LogisticRegression``, the demo pipeline;
- ``tree.HoeffdingAdaptiveTreeClassifier(seed=42)``;
- ``forest.ARFClassifier(n_models=5, max_depth=4, seed=42)``: five trees of depth 4 at most. Unbounded, river's
  ARF pickles to several MiB within a few thousand labels (5 trees: 2.6 MB after 2,000, 7.9 MB after 20,000 on
  these features), past the 1 MiB a Kafka record may hold, and a snapshot that large stops the learning service
  (``MSG_SIZE_TOO_LARGE``); depth 4 keeps it under 140 KB.

Run: ``.venv/bin/python -m bench.bench_learning [--labels 50000] [--tree-labels 20000] [--broker tansu|kafka|both]
[--models linear,hat,arf] [--profile DIR] [--env NAME=value]``; docs/benchmarks.md's "Learning at scale" ran with
``--env EDDY_LEARNING_BATCH_SIZE=5000``. Bounded: every drain stops after 180 s.
"""

from __future__ import annotations

import argparse
import pstats
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from eddy.contracts.stream import ModelSpec
from eddy.core.topics import StreamTopics
from eddy.kafka.client import consumer_config
from eddy.ml.models import load_snapshot_estimator

from bench import learning_handler
from bench.bench_cost import broker_kinds
from bench.learning_drain import (
    Learning,
    joined_pairs,
    learner_process,
    metric,
    prefilled,
    river_rate_and_cpu,
    time_drain,
)
from bench.machine import describe

FEATURES = ("f0", "f1", "f4")
MODELS = {
    "linear": ModelSpec(
        "default",
        (("preprocessing.StandardScaler", {}), ("linear_model.LogisticRegression", {})),
        FEATURES,
    ),
    "hat": ModelSpec("default", (("tree.HoeffdingAdaptiveTreeClassifier", {"seed": 42}),), FEATURES),
    "arf": ModelSpec("default", (("forest.ARFClassifier", {"n_models": 5, "max_depth": 4, "seed": 42}),), FEATURES),
}
TITLES = {
    "linear": "StandardScaler \\| LogisticRegression",
    "hat": "HoeffdingAdaptiveTreeClassifier",
    "arf": "ARFClassifier(n_models=5, max_depth=4)",
}
HELD_OUT = 500


@dataclass
class Run:
    model: str
    broker: str
    labels: int
    river_per_s: float
    learned_per_s: float
    published_per_s: float
    drain_s: float
    checkpoints: int
    checkpoint_ms: float
    same_model: bool | None
    # river's loop under eddy's garbage-collector settings, and CPU seconds per label of the faster river loop and
    # of the learning service (its process, while it learned).
    river_tuned_per_s: float = 0.0
    river_cpu_s: float = 0.0
    service_cpu_s: float = 0.0

    @property
    def river_best_per_s(self) -> float:
        return max(self.river_per_s, self.river_tuned_per_s)

    @property
    def overhead(self) -> float:
        """eddy's cost over river's, per label sustained: river's best time / the service's learning time - 1."""
        return self.river_best_per_s / self.learned_per_s - 1

    @property
    def overhead_published(self) -> float:
        """The same, until a snapshot holding every label is published (one snapshot interval more, at most)."""
        return self.river_best_per_s / self.published_per_s - 1

    @property
    def cpu_overhead(self) -> float:
        """eddy's CPU per label over river's: what the service spends, whatever else ran on the machine."""
        return self.service_cpu_s / self.river_cpu_s - 1 if self.river_cpu_s else float("nan")


def newest_model(learning: Learning) -> Any:
    """The estimator of the newest snapshot on S.models (its signature verified)."""
    topic = StreamTopics("bench10").models
    consumer = Consumer(consumer_config(learning.settings, f"bench-learning-{time.time_ns()}"))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    serde, best = learning.serdes.for_topic(topic), None
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.5:
        batch = [m for m in consumer.consume(500, 0.2) if not m.error()]
        if batch:
            quiet_since = time.monotonic()
        for m in batch:
            record = serde.decode(m.value())
            if best is None or record["learned_count"] >= best["learned_count"]:
                best = record
    consumer.close()
    if best is None:
        raise RuntimeError("no snapshot on S.models")
    return load_snapshot_estimator(best, learning.settings.keyring())


def same_predictions(a: Any, b: Any, rows: list[dict[str, Any]]) -> bool:
    return all(a.predict_proba_one(x) == b.predict_proba_one(x) for x in rows)


def run_one(
    name: str,
    broker: str,
    n: int,
    profile: Path | None,
    env: dict[str, str],
    partitions: int,
    learned_only: bool = False,
) -> Run:
    spec = MODELS[name]
    pairs = joined_pairs(n + HELD_OUT, FEATURES)
    pairs, held_out = pairs[:n], [p["features"] for p, _ in pairs[n:]]
    with prefilled(broker, pairs, spec, partitions) as learning:
        river_per_s, river_cpu, reference = river_rate_and_cpu(spec, pairs)
        river_tuned_per_s, river_tuned_cpu, _ = river_rate_and_cpu(spec, pairs, gc_tuned=True)
        where = profile / f"learning-{name}-{broker}.prof" if profile is not None else None
        with learner_process(learning, env, profile=where) as (url, proc):
            drained = time_drain(url, n, pid=proc.pid, published_too=not learned_only)
            checkpoints = int(metric(url, "eddy_checkpoint_seconds_count"))
            checkpoint_ms = metric(url, "eddy_checkpoint_seconds_sum") * 1000
        # Across partitions the learning order is the order the learner fetched them in: river's loop over the
        # pairs in event order is the same model only with one partition.
        same = same_predictions(newest_model(learning), reference, held_out) if partitions == 1 else None
    return Run(
        name,
        broker,
        n,
        river_per_s,
        drained.learned_per_s,
        drained.published_per_s,
        drained.drain_s,
        checkpoints,
        checkpoint_ms,
        same,
        river_tuned_per_s,
        min(river_cpu, river_tuned_cpu),
        drained.cpu_s_per_label or 0.0,
    )


def report(runs: list[Run]) -> None:
    print(
        "| model | broker | labels | river learn_one loop, default / eddy's GC (labels/s) "
        "| service, learned (labels/s) | service, learned and published (labels/s) "
        "| eddy's overhead over river: learned / published | CPU per label, river / service (µs) "
        "| eddy's CPU overhead | drain (s) | checkpoints (ms) | same model as river (1 partition) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        same = "n/a" if r.same_model is None else "yes" if r.same_model else "NO"
        print(
            f"| {TITLES[r.model]} | {r.broker} | {r.labels:,} | {r.river_per_s:,.0f} / {r.river_tuned_per_s:,.0f} "
            f"| {r.learned_per_s:,.0f} | {r.published_per_s:,.0f} | {r.overhead:+.0%} / {r.overhead_published:+.0%} "
            f"| {r.river_cpu_s * 1e6:.1f} / {r.service_cpu_s * 1e6:.1f} | {r.cpu_overhead:+.0%} | {r.drain_s:.2f} "
            f"| {r.checkpoints} ({r.checkpoint_ms:.0f}) | {same} |"
        )


def handler_alone(models: list[str], labels: int, tree_labels: int) -> None:
    print(f"machine: {describe()}; started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| model | labels | garbage collector | handler alone (labels/s) | river learn_one loop (labels/s) |")
    print("|---|---:|---|---:|---:|")
    for name in models:
        n = labels if name == "linear" else tree_labels
        for r in learning_handler.rounds(MODELS[name], joined_pairs(n, FEATURES)):
            print(f"| {TITLES[name]} | {n:,} | {r.policy} | {r.handler_per_s:,.0f} | {r.river_per_s:,.0f} |")


def print_profile(path: Path, top: int = 15) -> None:
    print(f"\n{path.name}, top {top} by own time:\n```")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    print("```")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=50_000, help="joined pairs for the linear pipeline")
    parser.add_argument("--tree-labels", type=int, default=20_000, help="joined pairs for the tree models")
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    parser.add_argument("--models", default="linear,hat,arf", help="comma-separated: linear, hat, arf")
    parser.add_argument("--profile", type=Path, help="run the service under cProfile, its stats into this folder")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the learner's environment")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (1: also compare the models)")
    parser.add_argument(
        "--learned-only",
        action="store_true",
        help="stop once every label is learned (for a learner whose snapshots are turned off with --env)",
    )
    parser.add_argument(
        "--handler-alone",
        action="store_true",
        help="only the learning handler in process, under CPython's and eddy's garbage-collector settings",
    )
    args = parser.parse_args()
    if args.handler_alone:
        handler_alone(args.models.split(","), args.labels, args.tree_labels)
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    env = dict(item.split("=", 1) for item in args.env)
    runs = []
    for broker in broker_kinds(args.broker):
        for name in args.models.split(","):
            n = args.labels if name == "linear" else args.tree_labels
            runs.append(run_one(name, broker, n, args.profile, env, args.partitions, args.learned_only))
    print(f"machine: {describe()}; started {started}")
    report(runs)
    if args.profile is not None:
        for path in sorted(args.profile.glob("*.prof")):
            print_profile(path)


if __name__ == "__main__":
    main()

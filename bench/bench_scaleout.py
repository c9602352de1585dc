"""Learning past one process (issue 23, point 2): one learning process against two, and what sharding costs.

Throughput. For each model and broker, a fresh broker's ``S.predictions`` and ``S.feedback`` (4 partitions) are
prefilled with N joined pairs (``bench.learning_drain``) of a model learning in 2 shards (``learning: {mode:
sharded, shards: 2}``), and drained twice, each time on a fresh broker with the same pairs: by one learning process
(both shards) and by two (``EDDY_LEARNING_PROCESSES=2``, one shard each), started together. A drain is timed from
the moment every process has learned its first label (each joins its own consumer group, and their start-ups differ)
until every label is learned, and until every label is published in the processes' snapshots (their ``/healthz``).
The ratio of the two rates is the scale-out; the target is 1.8 on this 2-core machine.

Quality. On river's bundled datasets (no download: ``Phishing``, ``Bananas``) and seeded synthetic streams
(``Agrawal``, ``SEA``), progressive validation (predict, then learn, each row in order) of the exact model against
the same model in 2 and 4 shards, a row going to shard ``murmur2(row index) % shards``, as an event keyed by its
id goes to the shard of its partition. Accuracy over every row; the shards' cost is the difference.

The machine's ceiling, for scale: river's own loop learning both shards' labels in one process, against one shard
each in two processes at once (no broker, no service).

Run: ``.venv/bin/python -m bench.bench_scaleout [--labels 200000] [--tree-labels 60000] [--broker tansu|kafka|both]
[--models linear,hat] [--env NAME=value] [--skip-quality] [--skip-throughput]``. Bounded: every drain stops
after 180 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eddy.contracts.learning import LearningSpec, murmur2, shard_of_key
from eddy.contracts.stream import ModelSpec
from eddy.core.settings import REPO_ROOT
from eddy.ml.models import build_estimator
from eddy.stack.embedded import free_port
from eddy.stack.supervisor import terminate
from eddy.stack.up import wait_http

from bench.bench_cost import CLK_TCK, broker_kinds, cpu_seconds
from bench.bench_learning import FEATURES, MODELS, TITLES
from bench.learning_drain import STREAM, TIME_LIMIT_S, Learning, joined_pairs, metric, prefilled, published
from bench.machine import describe

SHARDS = 2
PARTITIONS = 4


def sharded(name: str, shards: int = SHARDS) -> ModelSpec:
    """Model ``name`` of bench_learning (linear, hat), learning in ``shards`` shards."""
    return dataclasses.replace(MODELS[name], learning=LearningSpec("sharded", shards))


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


@contextmanager
def learners(learning: Learning, processes: int, env: dict[str, str]) -> Iterator[list[tuple[str, int]]]:
    """``processes`` learning processes (``EDDY_LEARNING_PROCESS`` 0..M-1), all started before any is waited for,
    so that none has a head start: their URLs."""
    procs, urls = [], []
    try:
        for index in range(processes):
            port = free_port()
            full_env = {
                **os.environ,
                **learning.settings.kafka_env(),
                "EDDY_HTTP_PORT": str(port),
                "EDDY_SERVICE_NAME": "learning",
                "EDDY_LOG_FORMAT": "json",
                "EDDY_LEARNING_PROCESSES": str(processes),
                "EDDY_LEARNING_PROCESS": str(index),
                **env,
            }
            log = open(learning.settings.state_dir / f"learning-{index}.log", "wb")  # noqa: SIM115 (closed below)
            procs.append((subprocess.Popen([sys.executable, "-m", "eddy.services.learning"], env=full_env,
                                           stdout=log, stderr=log, cwd=REPO_ROOT), log))  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_http(f"{url}/healthz", 60)
        yield [(url, proc.pid) for url, (proc, _) in zip(urls, procs, strict=True)]
    finally:
        for proc, log in procs:
            terminate(proc, 60.0)
            log.close()


@dataclass
class Timed:
    learned_per_s: float
    published_per_s: float
    learner_cores: float  # the learning processes' CPU over the window, in cores
    machine_cores: float  # the whole machine's (every session's) CPU over the window, in cores


def time_drain(processes: list[tuple[str, int]], n: int) -> Timed:
    """Labels/s while every process learns (from the moment the last one learned its first label) until all ``n``
    are learned, and until all are published in the processes' snapshots.

    Each process joins its own consumer group: their start-ups differ by up to a second, which on drains of a few
    seconds would be measured as the second process's slowness rather than its throughput.
    """
    urls = [url for url, _ in processes]
    deadline = time.monotonic() + TIME_LIMIT_S
    started: dict[str, float] = {}
    cpu_from, busy_from, cpu, busy, total = 0.0, (0.0, 0.0), 0.0, 0.0, 1.0
    from_at, from_learned, learned_at, published_at = 0.0, 0.0, 0.0, 0.0
    while time.monotonic() < deadline and not published_at:
        each = {url: metric(url, "eddy_labels_learned_total") for url in urls}
        now, learned = time.monotonic(), sum(each.values())
        started |= {url: now for url, count in each.items() if count and url not in started}
        if len(started) == len(urls) and not from_at:
            from_at, from_learned = now, learned
            cpu_from, busy_from = sum(cpu_seconds(pid) or 0.0 for _, pid in processes), machine_busy()
        if from_at and learned >= n and not learned_at:
            learned_at = now
            cpu = sum(cpu_seconds(pid) or 0.0 for _, pid in processes) - cpu_from
            busy, total = (after - before for after, before in zip(machine_busy(), busy_from, strict=True))
        if learned_at and sum(max(0, published(url)) for url in urls) >= n:
            published_at = time.monotonic()
        time.sleep(0.2)  # each poll renders every process's /metrics: its CPU is the learners'
    if not published_at:
        raise RuntimeError(f"the learners published {[published(u) for u in urls]} of {n} labels in {TIME_LIMIT_S}s")
    window, elapsed = n - from_learned, max(learned_at - from_at, 1e-9)
    cores = os.cpu_count() or 1
    return Timed(window / elapsed, window / (published_at - from_at), cpu / elapsed, busy / total * cores)


@dataclass
class Drain:
    model: str
    broker: str
    labels: int
    # processes -> its drain
    rates: dict[int, Timed]

    @property
    def ratio(self) -> float:
        return self.rates[2].published_per_s / self.rates[1].published_per_s


def drain(name: str, broker: str, n: int, env: dict[str, str]) -> Drain:
    pairs = joined_pairs(n, FEATURES)
    rates = {}
    for processes in (1, 2):
        with (
            prefilled(broker, pairs, sharded(name), PARTITIONS) as learning,
            learners(learning, processes, env) as procs,
        ):
            rates[processes] = time_drain(procs, n)
    return Drain(name, broker, n, rates)


# -- the machine's ceiling: river alone, one process against two -------------------------------------------------


def _river_learns(name: str, n: int, shard: int | None, results: Any) -> None:
    """river's learn_one loop over the bench pairs of ``shard`` (None: both shards, each its own model)."""
    pairs = [(p["features"], lab["label"], shard_of_key(p["event_id"], SHARDS)) for p, lab in joined_pairs(n, FEATURES)]
    mine = [(x, y, s) for x, y, s in pairs if shard is None or s == shard]
    models = [build_estimator(sharded(name)) for _ in range(SHARDS)]
    started = time.perf_counter()
    for x, y, s in mine:
        models[s].learn_one(x, y)
    results.put((len(mine), time.perf_counter() - started))


def ceiling(name: str, n: int) -> tuple[float, float]:
    """Labels/s of river alone learning both shards in one process, and one shard each in two at once: what this
    machine gives two CPU-bound processes, with no broker and no service."""
    results: Any = multiprocessing.Queue()
    one = multiprocessing.Process(target=_river_learns, args=(name, n, None, results))
    one.start()
    one.join()
    count, seconds = results.get()
    two = [multiprocessing.Process(target=_river_learns, args=(name, n, s, results)) for s in range(SHARDS)]
    for proc in two:
        proc.start()
    for proc in two:
        proc.join()
    done = [results.get() for _ in two]
    return count / seconds, sum(c for c, _ in done) / max(s for _, s in done)


# -- the quality cost ---------------------------------------------------------------------------------------------


def datasets(rows: int) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """River's bundled binary datasets and two seeded synthetic streams of ``rows`` rows, as (x, y) lists."""
    from river import datasets
    from river.datasets import synth

    return {
        "Phishing (1,250 rows)": list(datasets.Phishing()),
        "Bananas (5,300 rows)": list(datasets.Bananas()),
        f"Agrawal(seed=42), {rows:,} rows": list(itertools.islice(synth.Agrawal(seed=42), rows)),
        f"SEA(seed=42), {rows:,} rows": list(itertools.islice(synth.SEA(seed=42), rows)),
    }


def quality_spec(name: str) -> ModelSpec:
    """bench_learning's model ``name`` on every feature of the dataset (its features are the dataset's)."""
    return dataclasses.replace(MODELS[name], features=())


def progressive_accuracy(name: str, rows: list[tuple[dict[str, Any], Any]], shards: int) -> float:
    """Accuracy of predict-then-learn over ``rows`` in order, each row learned by its shard's model only."""
    spec = quality_spec(name)
    models = [build_estimator(spec) for _ in range(shards)]
    right = 0
    for i, (x, y) in enumerate(rows):
        model = models[murmur2(str(i).encode()) % shards] if shards > 1 else models[0]
        right += model.predict_one(x) == y
        model.learn_one(x, y)
    return right / len(rows)


def quality(models: list[str], rows: int) -> None:
    print("\n| model | dataset | exact | 2 shards | 4 shards | cost of 2 shards | cost of 4 shards |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (title, data), name in itertools.product(datasets(rows).items(), models):
        exact, two, four = (progressive_accuracy(name, data, shards) for shards in (1, 2, 4))
        print(
            f"| {TITLES[name]} | {title} | {exact:.2%} | {two:.2%} | {four:.2%} "
            f"| {(two - exact) * 100:+.1f} pts | {(four - exact) * 100:+.1f} pts |"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=200_000, help="joined pairs for the linear pipeline")
    parser.add_argument("--tree-labels", type=int, default=60_000, help="joined pairs for the Hoeffding tree")
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    parser.add_argument("--models", default="hat,linear", help="comma-separated: hat, linear")
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the learners' environment")
    parser.add_argument("--quality-rows", type=int, default=20_000, help="rows of each synthetic stream")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    env = dict(item.split("=", 1) for item in args.env)
    models = args.models.split(",")
    print(f"machine: {describe()}; started {started}; stream {STREAM}, {PARTITIONS} partitions, {SHARDS} shards")
    if not args.skip_throughput:
        drains = [
            drain(name, broker, args.labels if name == "linear" else args.tree_labels, env)
            for broker in broker_kinds(args.broker)
            for name in models
        ]
        print(
            "\n| model (2 shards) | broker | labels | 1 process: learned / published (labels/s) "
            "| 2 processes: learned / published (labels/s) | 2 processes / 1 (published) "
            "| learners' CPU, 1 / 2 processes (cores) | machine's CPU, 1 / 2 processes (cores) |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for d in drains:
            one, two = d.rates[1], d.rates[2]
            print(
                f"| {TITLES[d.model]} | {d.broker} | {d.labels:,} "
                f"| {one.learned_per_s:,.0f} / {one.published_per_s:,.0f} "
                f"| {two.learned_per_s:,.0f} / {two.published_per_s:,.0f} | **{d.ratio:.2f}** "
                f"| {one.learner_cores:.2f} / {two.learner_cores:.2f} "
                f"| {one.machine_cores:.2f} / {two.machine_cores:.2f} |"
            )
    if not args.skip_throughput:
        print(
            "\n| model (2 shards) | river alone, 1 process (labels/s) | river alone, 2 processes (labels/s) | ratio |"
        )
        print("|---|---:|---:|---:|")
        for name in models:
            alone, together = ceiling(name, args.labels if name == "linear" else args.tree_labels)
            print(f"| {TITLES[name]} | {alone:,.0f} | {together:,.0f} | {together / alone:.2f} |")
    if not args.skip_quality:
        quality(models, args.quality_rows)


if __name__ == "__main__":
    main()

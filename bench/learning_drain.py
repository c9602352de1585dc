"""A learning-service drain, shared by the benchmarks that time it (bench_signing, bench_learning).

A fresh broker's ``S.predictions`` and ``S.feedback`` are prefilled with N joined pairs of the bench10 stream's
champion, ``python -m eddy.services.learning`` is started as a subprocess with its default checkpoints and
snapshots (or the intervals given), and the drain is timed from its first learned label until it has learned them
all (``eddy_labels_learned_total``) and published a snapshot with ``learned_count`` = N (its ``/healthz``). The
baseline is river's own ``learn_one`` loop over the same examples, in process, in the same run.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from eddy.avro.serde import SerdeRegistry, registry_client
from eddy.contracts.stream import ModelSpec, StreamContract, load_contracts
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import PLATFORM_TOPICS, StreamTopics
from eddy.kafka.client import ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer
from eddy.ml.models import build_estimator
from eddy.runtime import gc_policy
from eddy.stack.embedded import free_port
from eddy.stack.supervisor import terminate
from eddy.stack.up import wait_http
from prometheus_client.parser import text_string_to_metric_families

from bench.bench_pipeline import bench_stack

SEED = 42
STREAM = "bench10"
TIME_LIMIT_S = 180.0
EPOCH_MS = int(time.time() * 1000)
ALL_FEATURES = ("f0", "f1", "f2", "f3", "f4", "f5")

Pair = tuple[dict[str, Any], dict[str, Any]]


def joined_pairs(n: int, features: Sequence[str] = ALL_FEATURES, seed: int = SEED) -> list[Pair]:
    """N (prediction, label) pairs of the bench10 stream's champion ``default`` v1, as inference logs them.

    The prediction carries ``features`` (of f0..f5) only, as inference logs the model's own features.

    >>> [sorted(p["features"]) for p, _ in joined_pairs(1, ("f0", "f4"))]
    [['f0', 'f4']]
    """
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        every: dict[str, Any] = {f"f{k}": round(rng.uniform(0, 100), 3) for k in range(4)}
        every |= {"f4": round(rng.uniform(-50, 50), 3), "f5": round(rng.uniform(-50, 50), 3)}
        truth = every["f0"] - every["f1"] + every["f4"] > 0
        prediction = {
            "event_id": f"s{i}",
            "stream": STREAM,
            "model_name": "default",
            "model_version": 1,
            "model_learned": 0,
            "served": True,
            "prediction": False,
            "probabilities": {"false": 0.5, "true": 0.5},
            "features": {f: every[f] for f in features},
            "event_time_ms": EPOCH_MS + i,
            "predicted_at_ms": EPOCH_MS + i,
            "latency_ms": 0.1,
            "ingested_at_ms": None,
            "source_partition": 0,
            "source_offset": i,
            "segment": "north",
        }
        label = {"event_id": f"s{i}", "label": truth, "label_time_ms": EPOCH_MS + n, "source": "bench"}
        pairs.append((prediction, label))
    return pairs


def river_rate(spec: ModelSpec, pairs: list[Pair]) -> tuple[float, Any]:
    """river's own ``learn_one`` loop over the pairs, in process: labels/s, and the model it built."""
    rate, _, model = river_rate_and_cpu(spec, pairs)
    return rate, model


def river_rate_and_cpu(spec: ModelSpec, pairs: list[Pair], gc_tuned: bool = False) -> tuple[float, float, Any]:
    """river's own ``learn_one`` loop over the pairs, in process: labels/s, CPU seconds per label, and the model.

    With ``gc_tuned`` the loop runs under the garbage-collector settings eddy's services use
    (``eddy.runtime.gc_policy``), so that what is compared with the service is eddy's work, not the collector's.
    """
    model = build_estimator(spec)
    examples = [(p["features"], lab["label"]) for p, lab in pairs]
    with collector(gc_tuned):
        started, cpu_started = time.perf_counter(), time.process_time()
        for x, y in examples:
            model.learn_one(x, y)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return len(examples) / wall, cpu / len(examples), model


@contextmanager
def collector(eddys: bool) -> Iterator[None]:
    """The garbage-collector settings of eddy's services (``eddy.runtime.gc_policy``) if ``eddys``, else
    CPython's as they are, for the duration; as they were afterwards."""
    saved = gc.get_threshold()
    if eddys:
        gc_policy.tune_for_streaming(freeze=False)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def metric(url: str, name: str) -> float:
    """The sum of the samples called ``name`` on ``url``/metrics (0 when there are none)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def published(url: str) -> int:
    """The champion's learned count in the learner's newest snapshot (its /healthz), -1 before any."""
    try:
        return int(httpx.get(f"{url}/healthz", timeout=2).json().get("learned", {}).get(STREAM, -1))
    except (httpx.HTTPError, ValueError):
        return -1


def contracts_with(spec: ModelSpec, folder: Path) -> Path:
    """A copy of bench10's contract in ``folder`` whose only model is ``spec``: the folder, for EDDY_CONTRACTS_DIR."""
    source = REPO_ROOT / "bench" / "streams"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / f"{STREAM}.avsc", folder / f"{STREAM}.avsc")
    doc = yaml.safe_load((source / f"{STREAM}.yaml").read_text())
    model: dict[str, Any] = {
        "name": spec.name,
        "features": list(spec.features),
        "pipeline": [{n: p} for n, p in spec.pipeline],
    }
    if not spec.learning.exact:
        model["learning"] = {"mode": spec.learning.mode, "shards": spec.shards}
    doc["models"] = [model]
    (folder / f"{STREAM}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


@dataclass
class Drained:
    """One drain of the learning service."""

    learned_per_s: float  # first label learned to all learned
    published_per_s: float  # first label learned to a snapshot with all of them
    drain_s: float
    url: str
    # The learner process's CPU time (user + system) per label learned, first label learned to all learned, when
    # its pid was given: what eddy spends per label whatever else the machine runs meanwhile.
    cpu_s_per_label: float | None = None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Learning:
    """A prefilled broker and the settings a learner subprocess runs with."""

    settings: Settings
    contract: StreamContract
    serdes: SerdeRegistry


@contextmanager
def prefilled(
    broker: str, pairs: list[Pair], spec: ModelSpec | None = None, partitions: int | None = None
) -> Iterator[Learning]:
    """A fresh ``broker`` whose bench10 input holds ``pairs``; ``spec`` replaces the contract's model if given, and
    ``partitions`` the topics' partition count (default: eddy's)."""
    with bench_stack(STREAM, broker) as base:
        state_dir = Path(tempfile.mkdtemp(prefix="eddy-bench-learning-"))
        settings = dataclasses.replace(base, state_dir=state_dir)
        if partitions is not None:
            settings = dataclasses.replace(settings, partitions=partitions)
        if spec is not None:
            settings = dataclasses.replace(settings, contracts_dir=contracts_with(spec, state_dir / "contracts"))
        contracts = load_contracts(settings.contracts_dir, (STREAM,))
        topics = StreamTopics(STREAM)
        ensure_topics(settings, [*topics.all(), *PLATFORM_TOPICS])
        serdes = SerdeRegistry(registry_client(settings), settings.schemas_dir, contracts)
        producer = ConfirmedProducer(producer_config(settings))
        predict, feedback = serdes.for_topic(topics.predictions), serdes.for_topic(topics.feedback)
        for prediction, label in pairs:
            key = prediction["event_id"].encode()
            producer.produce(topics.predictions, predict.encode(prediction), key)
            producer.produce(topics.feedback, feedback.encode(label), key)
        producer.confirm()
        yield Learning(settings, contracts[STREAM], serdes)


@contextmanager
def learner_process(
    learning: Learning, env: dict[str, str] | None = None, profile: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m eddy.services.learning`` on ``learning``'s broker (under cProfile into ``profile`` if given):
    its URL and process, stopped with SIGTERM on exit (its log printed if it failed)."""
    port = free_port()
    full_env = {
        **os.environ,
        **learning.settings.kafka_env(),
        "EDDY_HTTP_PORT": str(port),
        "EDDY_SERVICE_NAME": "learning",
        "EDDY_LOG_FORMAT": "json",
        **(env or {}),
    }
    log_path = learning.settings.state_dir / "learning.log"
    command = [sys.executable, "-m", "eddy.services.learning"]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "eddy.services.learning"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=full_env, stdout=log, stderr=log, cwd=REPO_ROOT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", 60)
        yield url, proc
    finally:
        terminate(proc, 60.0)
        if proc.returncode not in (0, -signal.SIGTERM):
            print(log_path.read_text()[-3000:])


def time_drain(
    url: str, n: int, time_limit_s: float = TIME_LIMIT_S, pid: int | None = None, published_too: bool = True
) -> Drained:
    """Poll the learner until it has learned ``n`` labels and (``published_too``) published a snapshot with them
    all; with ``pid``, the learner's process, also its CPU time per label."""
    deadline = time.monotonic() + time_limit_s
    first_at, first_learned, learned_at, published_at = 0.0, 0.0, 0.0, 0.0
    first_cpu, learned_cpu = 0.0, 0.0
    while time.monotonic() < deadline and not published_at:
        learned = metric(url, "eddy_labels_learned_total")
        now = time.monotonic()
        if learned and not first_at:
            first_at, first_learned = now, learned
            first_cpu = process_cpu_s(pid) if pid is not None else 0.0
        if learned >= n and not learned_at:
            learned_at = now
            learned_cpu = process_cpu_s(pid) if pid is not None else 0.0
        if learned_at and (not published_too or published(url) >= n):
            published_at = time.monotonic()
        time.sleep(0.05)
    if not published_at:
        raise RuntimeError(f"the learner published {published(url)} of {n} labels in {time_limit_s:.0f}s")
    return Drained(
        (n - first_learned) / max(learned_at - first_at, 1e-9),
        (n - first_learned) / max(published_at - first_at, 1e-9),
        published_at - first_at,
        url,
        (learned_cpu - first_cpu) / max(n - first_learned, 1) if pid is not None else None,
    )

"""The cost of signed artifacts (issue 21): HMAC-SHA256 over every pickled model and checkpoint.

Three parts, each with its baseline measured in the same run:

1. Per artifact, in process (no broker): river models trained on the same seeded ``synth.SEA`` rows (the demo
   pipeline ``StandardScaler | LogisticRegression``, ``HoeffdingAdaptiveTreeClassifier``,
   ``ARFClassifier(n_models=10)``) and a learner checkpoint remembering 100,000 learned event ids, as after a long
   run. Bytes, ``pickle.dumps``, sign, verify and ``pickle.loads`` (medians), and the signing share
   (sign + verify) / (dumps + loads).
2. Safer than pickle? The same models through (a) a restricted unpickler whose ``find_class`` admits river
   classes and a short list of builtins/collections/numpy names (does it load them, at what cost, does it refuse
   forged payloads?), (b) JSON of river's ``_get_params()`` (a rebuilt model's predictions against the trained
   one's), (c) a generic JSON walk of the learned state (where it stops), (d) a hand-written JSON codec for the
   linear pipeline's learned state (bit-exact? what it costs).
3. Learning through the service with signing on: a fresh broker's ``S.predictions`` and ``S.feedback`` prefilled
   with N joined pairs, ``python -m eddy.services.learning`` started, timed until it has learned them all and
   published a snapshot with ``learned_count`` = N; baseline: river's own ``learn_one`` loop over the same N
   examples in process. Also how many snapshots and checkpoints were signed meanwhile and what signing them cost.

Run: ``.venv/bin/python -m bench.bench_signing [--labels 50000] [--reps 7] [--broker tansu|kafka|both]``
(``--skip-service`` for parts 1 and 2 only). Bounded in count and time.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import pickle
import subprocess
import tempfile
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from eddy.avro.serde import SerdeRegistry
from eddy.contracts.stream import ModelSpec
from eddy.core.settings import Settings
from eddy.core.signing import Keyring, KeyringSource
from eddy.core.topics import StreamTopics
from eddy.kafka.client import consumer_config
from eddy.ml.artifacts import signed_pickle, verify
from eddy.ml.models import ModelState, build_estimator
from eddy.services.learning import checkpoint
from eddy.services.learning.handlers import LearnerState
from river import datasets, forest, tree
from river.stream import iter_csv
from river.utils import VectorDict

from bench.bench_cost import broker_kinds
from bench.learning_drain import joined_pairs, learner_process, metric, prefilled, river_rate, time_drain
from bench.machine import describe

SEED = 42
TRAIN_ROWS = 5_000
HELD_OUT_ROWS = 500
REMEMBERED_IDS = 100_000
TIME_LIMIT_S = 180.0
STREAM = "bench10"
SNAPSHOT_INTERVAL_S = 0.5
CHECKPOINT_INTERVAL_S = 5.0
DEMO = "demo pipeline: StandardScaler, LogisticRegression"
DEMO_SPEC = ModelSpec(
    "default",
    (("preprocessing.StandardScaler", {}), ("linear_model.LogisticRegression", {})),
    ("x0", "x1", "x2"),
)

Row = tuple[dict[str, float], bool]


# -- part 1: per artifact -------------------------------------------------------------------------------------


def sea_rows(count: int, seed: int = SEED) -> list[Row]:
    """``count`` rows of river's SEA generator, with eddy-style string feature names."""
    sea = datasets.synth.SEA(seed=seed)
    return [({f"x{k}": float(v) for k, v in x.items()}, bool(y)) for x, y in itertools.islice(sea, count)]


def trained_models(rows: list[Row]) -> dict[str, Any]:
    """The three river models of the benchmark, each trained on ``rows`` in order."""
    models = {
        DEMO: build_estimator(DEMO_SPEC),
        "HoeffdingAdaptiveTreeClassifier": tree.HoeffdingAdaptiveTreeClassifier(seed=SEED),
        "ARFClassifier(n_models=10)": forest.ARFClassifier(n_models=10, seed=SEED),
    }
    for model in models.values():
        for x, y in rows:
            model.learn_one(x, y)
    return models


def long_run_checkpoint(model: Any, remembered: int = REMEMBERED_IDS) -> checkpoint.Checkpoint:
    """A learner checkpoint as after a long run: ``remembered`` learned event ids, offsets of four partitions."""
    state = ModelState(STREAM, DEMO_SPEC, model, learned_count=remembered)
    now_ms = int(time.time() * 1000)
    learned = OrderedDict((f"ev{i}", now_ms + i) for i in range(remembered))
    offsets = {f"{topic}:{p}": remembered // 4 for topic in ("s.predictions", "s.feedback") for p in range(4)}
    return checkpoint.Checkpoint("bench-cluster", LearnerState(state, learned=learned, offsets=offsets))


def timed_us(action: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median µs of ``reps`` calls of ``action``, and the last call's result."""
    times, result = [], None
    for _ in range(reps):
        started = time.perf_counter_ns()
        result = action()
        times.append((time.perf_counter_ns() - started) / 1000)
    return median(times), result


@dataclass
class ArtifactCost:
    name: str
    size: int
    dumps_us: float
    sign_us: float
    verify_us: float
    loads_us: float
    restricted_us: float  # loads through RiverUnpickler; nan when it refuses the artifact

    @property
    def signing_per_s(self) -> float:
        """µs of signing per second: a snapshot is signed and verified every 0.5 s, a checkpoint signed every 5 s."""
        if self.name.startswith("learner checkpoint"):
            return self.sign_us / CHECKPOINT_INTERVAL_S
        return (self.sign_us + self.verify_us) / SNAPSHOT_INTERVAL_S

    @property
    def share(self) -> float:
        return (self.sign_us + self.verify_us) / (self.dumps_us + self.loads_us)


def artifact_cost(name: str, obj: Any, signer: KeyringSource, reps: int) -> ArtifactCost:
    """What eddy's signed pickle costs for ``obj``, step by step (``eddy.ml.artifacts.signed_pickle`` and back)."""
    dumps_us, data = timed_us(lambda: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), reps)
    sign_us, signature = timed_us(lambda: signer.sign(data), reps)
    verify_us, _ = timed_us(lambda: signer.verify(data, signature), reps)
    loads_us, _ = timed_us(lambda: pickle.loads(data), reps)  # verified just above
    try:
        restricted_us, _ = timed_us(lambda: restricted_loads(data), reps)
    except pickle.UnpicklingError as exc:
        print(f"restricted unpickler refused {name}: {exc}")
        restricted_us = float("nan")
    return ArtifactCost(name, len(data), dumps_us, sign_us, verify_us, loads_us, restricted_us)


# -- part 2: safer than pickle? -------------------------------------------------------------------------------

# Names a river model or a learner checkpoint needs beyond river's own classes. Every river *class* is admitted
# (a class's constructor is called with the pickle's arguments); river functions and dotted names are not.
SAFE_GLOBALS = frozenset(
    {
        *(("builtins", n) for n in ("bool", "bytes", "complex", "dict", "float", "frozenset", "int", "list")),
        *(("builtins", n) for n in ("range", "set", "slice", "str", "tuple")),
        *(("collections", n) for n in ("Counter", "OrderedDict", "defaultdict", "deque")),
        ("copyreg", "_reconstructor"),
        ("functools", "partial"),
        ("random", "Random"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        # A learner checkpoint's own classes.
        ("eddy.services.learning.checkpoint", "Checkpoint"),
        ("eddy.services.learning.handlers", "LearnerState"),
        ("eddy.services.learning.handlers", "PredictionGap"),
        ("eddy.ml.models", "ModelState"),
        ("eddy.contracts.stream", "ModelSpec"),
    }
)


class RiverUnpickler(pickle.Unpickler):
    """An unpickler that resolves only river classes and ``SAFE_GLOBALS``: defense in depth behind the HMAC.

    >>> RiverUnpickler(io.BytesIO(pickle.dumps(Counter(a=1)))).load()
    Counter({'a': 1})
    >>> RiverUnpickler(io.BytesIO(pickle.dumps(eval))).load()
    Traceback (most recent call last):
    ...
    _pickle.UnpicklingError: global builtins.eval is not allowed
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        if module.split(".")[0] == "river" and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def restricted_loads(data: bytes) -> Any:
    return RiverUnpickler(io.BytesIO(data)).load()


class RecordingUnpickler(pickle.Unpickler):
    """An ordinary unpickler that notes every global the bytes name."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.names: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.names.add(f"{module}.{name}")
        return super().find_class(module, name)


def globals_of(data: bytes) -> set[str]:
    """The globals a pickle names (it is unpickled: only for bytes whose signature was verified)."""
    recorder = RecordingUnpickler(data)
    recorder.load()
    return recorder.names


class Payload:
    """Pickles to a call of ``target(*args)``: what a forged snapshot carries."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        self.target, self.args = target, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.target, self.args


def forged_refusals(workdir: Path) -> list[tuple[str, bool]]:
    """Forged payloads against the restricted unpickler: (what, refused and its file never written)."""
    outcomes = []
    for what, make in (
        ("os.system", lambda marker: Payload(os.system, f"touch {marker}")),
        ("builtins.exec", lambda marker: Payload(exec, f"open({str(marker)!r}, 'w').close()")),
        ("subprocess.call", lambda marker: Payload(subprocess.call, ["touch", str(marker)])),
        ("builtins.getattr gadget", lambda marker: Payload(getattr, Counter, "fromkeys")),
        ("a river function, not a class", lambda marker: Payload(iter_csv, str(marker))),
    ):
        marker = workdir / f"forged-{what.replace(' ', '-')}"
        try:
            restricted_loads(pickle.dumps(make(marker)))
            refused = False
        except pickle.UnpicklingError:
            refused = True
        outcomes.append((what, refused and not marker.exists()))
    return outcomes


def json_tree(obj: Any, obstacles: set[str], depth: int = 0) -> Any:
    """A JSON-able tree of a river object's attributes; what JSON cannot carry as it is goes into ``obstacles``.

    River objects become ``{"__class__": ..., "state": vars(obj)}``; anything else that is not JSON is noted and
    written as null, so one walk finds every kind of obstacle, not just the first.

    >>> import random
    >>> found = set()
    >>> json_tree({"a": [1, 2.5], True: None, "r": random.Random(1)}, found)
    {'a': [1, 2.5], 'True': None, 'r': None}
    >>> sorted(found)
    ['a bool dict key (convertible)', 'random.Random']
    """
    if depth > 200:
        obstacles.add("nesting deeper than 200 (a cycle or a very deep tree)")
        return None
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, list | tuple):
        return [json_tree(v, obstacles, depth + 1) for v in obj]
    if isinstance(obj, dict):
        for key in obj:
            if not isinstance(key, str):
                obstacles.add(f"a {type(key).__name__} dict key (convertible)")
        if isinstance(obj, defaultdict) and obj.default_factory not in (None, float, int):
            factory = obj.default_factory
            obstacles.add(f"a defaultdict of {getattr(factory, '__qualname__', type(factory).__qualname__)}")
        return {str(k): json_tree(v, obstacles, depth + 1) for k, v in obj.items()}
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if type(obj).__module__.split(".")[0] == "river" and hasattr(obj, "__dict__"):
        return {"__class__": kind, "state": json_tree(vars(obj), obstacles, depth + 1)}
    obstacles.add(kind)
    return None


def generic_json(model: Any) -> tuple[int, list[str]]:
    """Bytes of the generic JSON walk of ``model`` and what it could not carry."""
    obstacles: set[str] = set()
    text = json.dumps(json_tree(model, obstacles))
    return len(text.encode()), sorted(obstacles)


def params_json(value: Any) -> Any:
    """river's ``_get_params()`` as JSON: classes by name."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], type):
        return {f"{value[0].__module__}.{value[0].__qualname__}": params_json(value[1])}
    if isinstance(value, dict):
        return {str(k): params_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [params_json(v) for v in value]
    return value if value is None or isinstance(value, bool | int | float | str) else repr(value)


def linear_state(model: Any) -> dict[str, Any]:
    """Everything the demo pipeline learns, by hand: what its classes keep today (private names included)."""
    scaler, logreg = model["StandardScaler"], model["LogisticRegression"]
    return {
        "spec": DEMO_SPEC.to_json(),
        "counts": dict(scaler.counts),
        "means": dict(scaler.means),
        "vars": dict(scaler.vars),
        "weights": dict(logreg._weights),
        "intercept": logreg.intercept,
        "n_iterations": logreg.optimizer.n_iterations,
    }


def linear_from_state(state: dict[str, Any]) -> Any:
    """The demo pipeline rebuilt from ``linear_state`` (assumes the spec is DEMO_SPEC's)."""
    model = build_estimator(DEMO_SPEC)
    scaler, logreg = model["StandardScaler"], model["LogisticRegression"]
    scaler.counts = Counter(state["counts"])
    scaler.means = defaultdict(float, state["means"])
    scaler.vars = defaultdict(float, state["vars"])
    logreg._weights = VectorDict(state["weights"])
    logreg.intercept = state["intercept"]
    logreg.optimizer.n_iterations = state["n_iterations"]
    return model


def same_model(a: Any, b: Any, rows: list[Row]) -> bool:
    """Whether ``a`` and ``b`` give the same probabilities on ``rows``, then again after learning them."""
    for x, y in rows:
        if a.predict_proba_one(x) != b.predict_proba_one(x):
            return False
        a.learn_one(x, y)
        b.learn_one(x, y)
    return all(a.predict_proba_one(x) == b.predict_proba_one(x) for x, _ in rows)


def largest_gap(trained: Any, other: Any, rows: list[Row]) -> float:
    """The largest difference in P(True) between two models on ``rows``."""
    return max(
        abs(trained.predict_proba_one(x).get(True, 0.0) - other.predict_proba_one(x).get(True, 0.0)) for x, _ in rows
    )


@dataclass
class Alternatives:
    """Part 2 for one model."""

    name: str
    globals_needed: int
    non_river_globals: list[str]
    restricted_ok: bool
    restricted_us: float
    loads_us: float
    params_bytes: int
    params_gap: float
    generic_bytes: int
    generic_obstacles: list[str]
    codec: tuple[int, float, float, bool] | None = None  # bytes, dumps µs, loads µs, exact


def alternatives(name: str, model: Any, held_out: list[Row], reps: int, signer: KeyringSource) -> Alternatives:
    data, signature = signed_pickle(model, signer)
    verify(data, signature, signer, "bench")  # every load below is of these bytes
    names = globals_of(data)
    loads_us, _ = timed_us(lambda: pickle.loads(data), reps)
    try:
        restricted_us, restored = timed_us(lambda: restricted_loads(data), reps)
        restricted_ok = same_model(restored, pickle.loads(data), held_out)
    except pickle.UnpicklingError as exc:
        print(f"restricted unpickler refused {name}: {exc}")
        restricted_us, restricted_ok = float("nan"), False
    params = json.dumps(params_json(model._get_params()))
    rebuilt = model.clone()  # what _get_params() rebuilds: the hyperparameters, none of the learned state
    result = Alternatives(
        name,
        len(names),
        sorted(n for n in names if not n.startswith("river.")),
        restricted_ok,
        restricted_us,
        loads_us,
        len(params.encode()),
        largest_gap(model, rebuilt, held_out),
        *generic_json(model),
    )
    if name == DEMO:
        dumps_us, text = timed_us(lambda: json.dumps(linear_state(model)), reps)
        codec_loads_us, _ = timed_us(lambda: linear_from_state(json.loads(text)), reps)
        exact = same_model(linear_from_state(json.loads(text)), pickle.loads(data), held_out)
        result.codec = (len(text.encode()), dumps_us, codec_loads_us, exact)
    return result


# -- part 3: learning through the service ---------------------------------------------------------------------


def read_snapshots(settings: Settings, serdes: SerdeRegistry) -> list[dict[str, Any]]:
    """Every snapshot on S.models (the topic is compacted, but not within the few seconds of a run)."""
    topic = StreamTopics(STREAM).models
    consumer = Consumer(consumer_config(settings, f"bench-signing-{os.getpid()}"))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    serde, out = serdes.for_topic(topic), []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.5:
        batch = [m for m in consumer.consume(500, 0.2) if not m.error()]
        if batch:
            quiet_since = time.monotonic()
        out.extend(serde.decode(m.value()) for m in batch)
    consumer.close()
    return out


@dataclass
class ServiceRun:
    broker: str
    labels: int
    river_per_s: float
    learned_per_s: float = 0.0
    published_per_s: float = 0.0
    snapshots: int = 0
    snapshot_bytes: list[int] = field(default_factory=list)
    snapshot_sign_ms: float = 0.0
    checkpoints: int = 0
    checkpoint_write_ms: float = 0.0
    checkpoint_bytes: int = 0
    checkpoint_sign_ms: float = 0.0
    one_checkpoint_sign_ms: float = 0.0
    drain_s: float = 0.0


def run_service(broker: str, n: int) -> ServiceRun:
    pairs = joined_pairs(n)
    with prefilled(broker, pairs) as learning:
        settings, serdes = learning.settings, learning.serdes
        run = ServiceRun(broker, n, river_rate(learning.contract.champion, pairs)[0])
        env = {
            "EDDY_SNAPSHOT_INTERVAL_S": str(SNAPSHOT_INTERVAL_S),
            "EDDY_CHECKPOINT_INTERVAL_S": str(CHECKPOINT_INTERVAL_S),
        }
        with learner_process(learning, env) as (url, _):
            drained = time_drain(url, n)
            run.learned_per_s, run.published_per_s, run.drain_s = (
                drained.learned_per_s,
                drained.published_per_s,
                drained.drain_s,
            )
            # Counted over the service's life: the start-up publish and the drain (no checkpoint at start).
            run.snapshots = int(metric(url, "eddy_snapshots_published_total"))
            run.checkpoints = int(metric(url, "eddy_checkpoint_seconds_count"))
            run.checkpoint_write_ms = metric(url, "eddy_checkpoint_seconds_sum") * 1000
        keys = settings.keyring()
        snapshots = read_snapshots(settings, serdes)
        run.snapshot_bytes = [len(s["artifact"]) for s in snapshots]
        run.snapshot_sign_ms = sum(timed_us(lambda a=s["artifact"]: keys.sign(a), 5)[0] for s in snapshots) / 1000
        saved = checkpoint.checkpoint_path(settings.state_dir, STREAM, "default")
        if saved.exists():
            data = saved.read_bytes()
            run.checkpoint_bytes = len(data)
            # The last checkpoint is the largest: the earlier ones cost at most this much each.
            run.one_checkpoint_sign_ms = timed_us(lambda: keys.sign(data), 5)[0] / 1000
            run.checkpoint_sign_ms = run.checkpoints * run.one_checkpoint_sign_ms
    return run


# -- the report -----------------------------------------------------------------------------------------------


def kb(size: float) -> str:
    return f"{size / 1024:,.1f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:,.2f} MiB"


def report_artifacts(costs: list[ArtifactCost], reps: int) -> None:
    print(f"\n### Per artifact, in process (median of {reps}; HMAC-SHA256 with eddy's KeyringSource)\n")
    print(
        f"Signing at its rate: a model snapshot signed by learning and verified by inference every "
        f"{SNAPSHOT_INTERVAL_S} s, a checkpoint signed every {CHECKPOINT_INTERVAL_S:.0f} s "
        "(verified only at a restart).\n"
    )
    print(
        "| artifact | bytes | pickle.dumps µs | sign µs | verify µs | pickle.loads µs | signing share "
        "| restricted loads µs (vs pickle.loads) | signing at its rate, % of a core |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in costs:
        restricted = (
            f"{c.restricted_us:,.0f} ({c.restricted_us / c.loads_us - 1:+.0%})"
            if c.restricted_us == c.restricted_us
            else "refused"
        )
        print(
            f"| {c.name} | {kb(c.size)} | {c.dumps_us:,.0f} | {c.sign_us:,.0f} | {c.verify_us:,.0f} "
            f"| {c.loads_us:,.0f} | {c.share:.1%} | {restricted} "
            f"| {c.signing_per_s / 1e6:.2%} |"
        )


def report_alternatives(alts: list[Alternatives], refusals: list[tuple[str, bool]]) -> None:
    print("\n### Safer than pickle?\n")
    print(
        "| model | globals named | outside river | restricted unpickler | its loads µs (pickle.loads µs) "
        "| _get_params() JSON | max P(True) gap, rebuilt from params | generic JSON walk of the learned state |"
    )
    print("|---|---:|---|---|---:|---:|---:|---|")
    for a in alts:
        outside = ", ".join(a.non_river_globals) or "none"
        restricted = "loads, same model" if a.restricted_ok else "FAILS"
        generic = f"{kb(a.generic_bytes)}; cannot carry: " + (", ".join(a.generic_obstacles) or "nothing")
        print(
            f"| {a.name} | {a.globals_needed} | {outside} | {restricted} | {a.restricted_us:,.0f} ({a.loads_us:,.0f}) "
            f"| {kb(a.params_bytes)} | {a.params_gap:.3f} | {generic} |"
        )
    for a in alts:
        if a.codec is not None:
            size, dumps_us, loads_us, exact = a.codec
            print(
                f"\nHand-written JSON codec of the {a.name} state: {kb(size)}, dumps {dumps_us:,.0f} µs, "
                f"rebuild {loads_us:,.0f} µs, bit-exact predictions and further learning: {'yes' if exact else 'NO'}"
            )
    print(
        "\nForged payloads against the restricted unpickler: "
        + "; ".join(f"{what}: {'refused, no file' if ok else 'NOT REFUSED'}" for what, ok in refusals)
    )


def report_service(runs: list[ServiceRun], costs: list[ArtifactCost]) -> None:
    if not runs:
        return
    print(f"\n### Learning through the service, signing on ({runs[0].labels:,} prefilled joined pairs)\n")
    print("| | " + " | ".join(r.broker for r in runs) + " |")
    print("|---|" + "---:|" * len(runs))

    def row(label: str, cell: Callable[[ServiceRun], str]) -> None:
        print(f"| {label} | " + " | ".join(cell(r) for r in runs) + " |")

    row("river learn_one loop, in process (labels/s)", lambda r: f"{r.river_per_s:,.0f}")
    row("learning service, learned (labels/s)", lambda r: f"{r.learned_per_s:,.0f}")
    row("learning service, learned and published (labels/s)", lambda r: f"{r.published_per_s:,.0f}")
    row("service / river (published)", lambda r: f"{r.published_per_s / r.river_per_s:.0%}")
    row("drain, first label learned to snapshot with all (s)", lambda r: f"{r.drain_s:.1f}")
    row("snapshots signed (incl. the one at start)", lambda r: f"{r.snapshots}")
    row("snapshot artifact size (max)", lambda r: kb(max(r.snapshot_bytes, default=0)))
    row("signing the snapshots, total (ms)", lambda r: f"{r.snapshot_sign_ms:.2f}")
    row("checkpoints written during the drain", lambda r: f"{r.checkpoints}")
    row("checkpoint writes, total incl. pickle + fsync (ms)", lambda r: f"{r.checkpoint_write_ms:.1f}")
    row("last checkpoint file (written at the stop)", lambda r: kb(r.checkpoint_bytes))
    row("signing it (ms)", lambda r: f"{r.one_checkpoint_sign_ms:.2f}")
    row("signing the checkpoints, total, at most (ms)", lambda r: f"{r.checkpoint_sign_ms:.2f}")
    row(
        "signing share of the drain",
        lambda r: f"{(r.snapshot_sign_ms + r.checkpoint_sign_ms) / 1000 / r.drain_s:.3%}" if r.drain_s else "-",
    )
    demo = next((c for c in costs if c.name == DEMO), None)
    if demo is not None:
        print(
            f"\nInference verifies each snapshot it loads (one every {SNAPSHOT_INTERVAL_S} s per learning model): "
            f"{demo.verify_us:,.0f} µs for the demo pipeline's {kb(demo.size)}, "
            f"{demo.verify_us / 1e6 / SNAPSHOT_INTERVAL_S:.4%} of a core; not per record."
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--labels", type=int, default=50_000, help="joined pairs the learning service drains")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per in-process timing (median)")
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    parser.add_argument("--skip-service", action="store_true", help="parts 1 and 2 only (no broker)")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = sea_rows(TRAIN_ROWS + HELD_OUT_ROWS)
    train, held_out = rows[:TRAIN_ROWS], rows[TRAIN_ROWS:]
    models = trained_models(train)
    signer = KeyringSource(static=Keyring.generate())
    costs = [artifact_cost(name, model, signer, args.reps) for name, model in models.items()]
    demo = next(iter(models.values()))
    costs.append(
        artifact_cost(f"learner checkpoint ({REMEMBERED_IDS:,} ids)", long_run_checkpoint(demo), signer, args.reps)
    )
    alts = [alternatives(name, model, held_out, args.reps, signer) for name, model in models.items()]
    with tempfile.TemporaryDirectory() as workdir:
        refusals = forged_refusals(Path(workdir))
    runs = [] if args.skip_service else [run_service(b, args.labels) for b in broker_kinds(args.broker)]
    print(f"machine: {describe()}; started {started}")
    print(f"models trained on {TRAIN_ROWS:,} rows of river's synth.SEA(seed={SEED}); {HELD_OUT_ROWS} held out")
    report_artifacts(costs, args.reps)
    report_alternatives(alts, refusals)
    report_service(runs, costs)


if __name__ == "__main__":
    main()

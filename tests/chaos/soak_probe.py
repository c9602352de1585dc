"""The soak run: the whole embedded stack under a constant load, its memory and join state watched.

``eddy up`` serves one stream (``soak``: the demo contract with retraining's drift trigger off, so the
champion stays, and a short allowed lateness, so the join state has a bound the run reaches). A seeded
load sends events at a constant rate through the ingestion gateway, and the label of most of them
``label_delay_s`` later through its feedback door; the rest stay unlabelled, so the learner's expiry of
pending predictions is exercised too. Every ``sample_interval_s`` the run reads ``VmRSS`` of every eddy
process (the supervisor, each service, both registries) and of the broker, the learner's join state
(``eddy_join_state_size``), and each consuming service's lag (reported, not judged: a consumer that falls
behind holds fetched, unread input, which is not a leak).

The verdict, after a warm-up (the first ``warmup_fraction`` of the load):

- each eddy process: a least-squares line through its RSS; the growth it projects over the run
  (slope x duration) must stay within ``max(growth_floor_mb, growth_fraction x median RSS)``. The
  broker is reported but not judged: it keeps every record (no retention), so it grows by design.
- the join state: its peak within ``rate x (label delay + allowed lateness) x join_safety``, and its
  projected growth within ``max(growth_fraction x median, rate x label delay)``.
- the load itself: the achieved rate, the predictions made and the labels learned close to what was
  sent, and no process restarted, so a stalled or crashing stack cannot pass.

Memories bounded by count or time (the gateway's de-duplication window, the learner's and monitoring's
remembered ids, the dashboard's history) would fill for longer than a run at their defaults (the
learner keeps 2 M ids: 17 min at 2,000/s) and look like a leak. Unless ``scaled_bounds`` is off, the
run sizes them to fill in the first half of the warm-up, so the verdict sees them full and checks
that their bound holds.

With ``learner_speed`` set (issue 23: "a learner held at half the needed speed"), the learning service
is held to that fraction of its input rate (predictions and labels) for the whole run, with
``EDDY_LEARNING_MAX_RECORDS_PER_S``. The learner falls further behind all through the load (its input
waits in Kafka), and the same verdict holds: every process's memory bounded, the join state within its
bound, and, by the end of the drain, every label learned. (SIGSTOP and SIGCONT from here cannot do it:
the learner drains thousands of labels between two looks at it.) With ``max_lag_s`` the contract's
``monitoring.freshness.max_lag`` is set to it, and the run records the dashboard's ``freshness`` entry
and open alerts when the load ends and after the drain.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from eddy.core.settings import REPO_ROOT
from eddy.stack.demo import DemoConfig, demo_examples
from eddy.stack.up import pid_alive, read_stack, service_health
from prometheus_client.parser import text_string_to_metric_families

from tests.chaos.stack import stop_stack

STREAM = "soak"
BROKER = "broker"
SUPERVISOR = "supervisor"
# Processes reported but not judged: the broker stores every record in memory by design.
UNJUDGED = frozenset({BROKER})
TICK_S = 0.05
STACK_DOWN_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 5.0
DRAIN_POLL_S = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Far past any run: the load keeps SEA's first concept, there is nothing for retraining to answer.
NO_DRIFT = 10**12


@dataclass(frozen=True)
class SoakConfig:
    """One soak run: how long, how fast, and the bounds it is held to (see the module docstring)."""

    duration_s: float
    rate: float
    seed: int = 1
    label_delay_s: float = 1.0
    unlabelled_share: float = 0.05
    allowed_lateness_s: float = 10.0
    warmup_fraction: float = 0.25
    sample_interval_s: float = 5.0
    growth_floor_mb: float = 20.0
    growth_fraction: float = 0.15
    join_safety: float = 2.0
    min_rate_fraction: float = 0.9
    min_predicted_fraction: float = 0.95
    min_learned_fraction: float = 0.9
    drain_timeout_s: float = 60.0
    stack_timeout_s: float = 120.0
    max_request: int = 5000
    scaled_bounds: bool = True
    # The learner held to this fraction of its input rate (None: free); see the module docstring.
    learner_speed: float | None = None
    # The contract's monitoring.freshness.max_lag for the run, in seconds (None: the demo contract's).
    max_lag_s: float | None = None

    def __post_init__(self) -> None:
        if self.learner_speed is not None and not 0 < self.learner_speed < 1:
            raise ValueError(f"learner_speed must be in (0, 1), not {self.learner_speed!r}")
        if self.label_delay_s + self.allowed_lateness_s >= self.warmup_s:
            raise ValueError(
                f"label delay + allowed lateness ({self.label_delay_s + self.allowed_lateness_s:g}s) must be shorter "
                f"than the warm-up ({self.warmup_s:g}s): the join state would still be filling when the verdict looks"
            )

    @property
    def warmup_s(self) -> float:
        return self.duration_s * self.warmup_fraction

    @property
    def join_limit(self) -> float:
        """The most entries the join state may hold: every event of a label delay plus the lateness."""
        return self.rate * (self.label_delay_s + self.allowed_lateness_s) * self.join_safety


# -- the stack -----------------------------------------------------------------------------------------


def write_contract(directory: Path, config: SoakConfig) -> None:
    """The demo contract as stream ``soak``: drift trigger off, allowed lateness ``allowed_lateness_s``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "schemas/streams/demo.avsc", directory / "demo.avsc")
    text = (REPO_ROOT / "schemas/streams/demo.yaml").read_text()
    replacements = (
        ("stream: demo", f"stream: {STREAM}"),
        ("triggers: {drift: true}", "triggers: {drift: false}"),
        ("allowed_lateness: 1h", f"allowed_lateness: {config.allowed_lateness_s:g}s"),
    )
    if config.max_lag_s is not None:
        replacements += (("freshness: {max_lag: 30s}", f"freshness: {{max_lag: {config.max_lag_s:g}s}}"),)
    for old, new in replacements:
        if old not in text:
            raise RuntimeError(f"schemas/streams/demo.yaml no longer says {old!r}: update tests/chaos/soak_probe.py")
        text = text.replace(old, new)
    (directory / f"{STREAM}.yaml").write_text(text)


def stack_env(config: SoakConfig, workdir: Path) -> dict[str, str]:
    """``eddy up``'s environment: none of the caller's EDDY_*, the run's stream, the scaled memories."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
    env.update(EDDY_STATE_DIR=str(workdir / "state"), EDDY_CONTRACTS_DIR=str(workdir / "contracts"))
    env["EDDY_STREAMS"] = STREAM
    if config.scaled_bounds:
        memory_s = config.warmup_s / 2
        remembered = str(max(1000, int(config.rate * memory_s)))
        env.update(
            EDDY_INGEST_DEDUP_WINDOW_S=f"{memory_s:g}",
            EDDY_LEARNING_MAX_REMEMBERED=remembered,
            EDDY_MONITORING_REMEMBER=remembered,
            # The dashboard's history, in ticks of monitoring's default 1 s: 600 fill a 10-minute run.
            EDDY_MONITORING_HISTORY=str(max(10, int(memory_s))),
        )
    if config.learner_speed is not None:
        env["EDDY_LEARNING_MAX_RECORDS_PER_S"] = f"{learner_input_rate(config) * config.learner_speed:g}"
    return env


def learner_input_rate(config: SoakConfig) -> float:
    """Records a second the learner must read to keep up: every event's prediction and the labelled ones' labels.

    >>> learner_input_rate(SoakConfig(duration_s=60.0, rate=400.0, unlabelled_share=0.05))
    780.0
    """
    return config.rate * (2 - config.unlabelled_share)


@contextlib.contextmanager
def running_stack(config: SoakConfig, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``eddy up``, every service healthy; stopped with SIGTERM (SIGKILL if it hangs) on the way out."""
    write_contract(workdir / "contracts", config)
    with open(workdir / "up.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eddy.cli.main", "up"],
            env=stack_env(config, workdir),
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(workdir / "state", proc, config.stack_timeout_s)
        yield proc
    finally:
        stop_stack(proc, STACK_DOWN_TIMEOUT_S)


def _wait_healthy(state: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"eddy up exited with {proc.returncode} while starting; see {state.parent}/up.log")
        stack = read_stack(state)
        if stack and stack.get("ready") and all(_healthy(info) for info in stack["services"].values()):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the stack was not healthy within {timeout_s:.0f}s; see {state.parent}/up.log")


def _healthy(info: Mapping[str, Any]) -> bool:
    return pid_alive(info.get("pid")) and service_health(info.get("url"), 2.0).get("status") == "ok"


def process_pids(stack: Mapping[str, Any]) -> dict[str, int]:
    """Every process of the stack by name: the supervisor, each supervised child, the broker."""
    broker_pids = stack.get("broker_pids") or []
    pids = {SUPERVISOR: stack.get("supervisor_pid"), BROKER: broker_pids[0] if len(broker_pids) == 1 else None}
    pids.update({name: info.get("pid") for name, info in stack["services"].items()})
    return {name: int(pid) for name, pid in pids.items() if pid}


def rss_mb(pid: int) -> float | None:
    """The resident set of ``pid`` (``VmRSS`` in ``/proc/PID/status``) in MB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds ``pid`` has used (``/proc/PID/stat``); None once it is gone."""
    try:
        # Fields after the command name, which may hold spaces, ends with ")": utime and stime are 12th and 13th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return None


def scrape(url: str, names: Sequence[str]) -> dict[tuple[str, str], float]:
    """Each metric sample named in ``names``, summed over the ``soak`` stream's label sets, by (name, side).

    ``side`` is the join state's label (``predictions`` or ``labels``), empty for the other metrics.
    """
    text = httpx.get(f"{url}/metrics", timeout=REQUEST_TIMEOUT_S).text
    totals: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names and sample.labels.get("stream") == STREAM:
                key = (sample.name, sample.labels.get("side", ""))
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


# -- the load ------------------------------------------------------------------------------------------


@dataclass
class LoadTally:
    """What the load sent and what the gateway acknowledged."""

    planned: int = 0
    accepted_events: int = 0
    accepted_labels: int = 0
    skipped: int = 0
    skipped_labels: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return self.accepted_events / self.elapsed_s if self.elapsed_s else 0.0


class SoakLoad:
    """Events at a constant rate through ``POST /v1/streams/soak/events``, labels later through ``.../feedback``.

    Two doors, two threads, so that slow label requests do not hold events back: each ticks every
    ``TICK_S`` and sends what is due in requests of at most ``max_request`` records; a refused or failed
    request is sent again at the next tick. Events (and labels) more than ten seconds of load behind are
    skipped and counted, so a stalled gateway cannot grow the load's own memory.
    """

    def __init__(self, config: SoakConfig, gateway_url: str) -> None:
        self.config = config
        self.url = f"{gateway_url.rstrip('/')}/v1/streams/{STREAM}"
        # Past the run's last event: the load follows SEA's first concept throughout.
        self.examples = demo_examples(DemoConfig(stream=STREAM, seed=config.seed, drift_at=NO_DRIFT))
        # Its own generator: which events go unlabelled does not shift the features' sequence.
        self.labelled_draws = random.Random(config.seed * 7919 + 1)
        self.tally = LoadTally()
        self.backlog_limit = max(config.max_request, int(config.rate * 10))
        # Labels of accepted events, with the time they are due, from the events door to the labels door.
        self.labels_due: queue.SimpleQueue[tuple[float, dict[str, Any]]] = queue.SimpleQueue()
        self._failures_lock = threading.Lock()
        self._started = self._deadline = 0.0

    def run(self, stop: threading.Event) -> LoadTally:
        """Send for ``duration_s`` (or until ``stop``); returns what was sent and accepted."""
        self._started = time.monotonic()
        self._deadline = self._started + self.config.duration_s
        labels = threading.Thread(target=self._run_labels, args=(stop,), name="soak-labels")
        labels.start()
        try:
            self._run_events(stop)
        finally:
            labels.join()
        self.tally.elapsed_s = time.monotonic() - self._started
        return self.tally

    def _run_events(self, stop: threading.Event) -> None:
        total = int(self.config.duration_s * self.config.rate)
        waiting: deque[dict[str, Any]] = deque()
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            while not stop.is_set() and time.monotonic() < self._deadline:
                now = time.monotonic()
                due = min(total, int((now - self._started) * self.config.rate) + 1)
                while self.tally.planned < due:
                    waiting.append(self._event(self.tally.planned))
                    self.tally.planned += 1
                while len(waiting) > self.backlog_limit:
                    waiting.popleft()
                    self.tally.skipped += 1
                self._send_events(client, waiting)
                stop.wait(max(0.0, TICK_S - (time.monotonic() - now)))

    def _event(self, index: int) -> dict[str, Any]:
        features, label = next(self.examples)
        event = {"event_id": f"soak{self.config.seed}-{index}", "event_time_ms": int(time.time() * 1000), **features}
        unlabelled = self.labelled_draws.random() < self.config.unlabelled_share
        return {"event": event, "label": None if unlabelled else label}

    def _send_events(self, client: httpx.Client, waiting: deque[dict[str, Any]]) -> None:
        if not waiting:
            return
        batch = [waiting[i] for i in range(min(len(waiting), self.config.max_request))]
        accepted = self._post(client, "events", [item["event"] for item in batch])
        if accepted is None:
            return
        for _ in batch:
            waiting.popleft()
        self.tally.accepted_events += accepted
        due_at = time.monotonic() + self.config.label_delay_s
        for item in batch:
            if item["label"] is not None:
                self.labels_due.put((due_at, {"event_id": item["event"]["event_id"], "label": item["label"]}))

    def _run_labels(self, stop: threading.Event) -> None:
        due: deque[tuple[float, dict[str, Any]]] = deque()
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            while not stop.is_set() and time.monotonic() < self._deadline:
                now = time.monotonic()
                # At most one run's worth per tick: the queue is filled at the load's own rate.
                for _ in range(self.labels_due.qsize()):
                    due.append(self.labels_due.get_nowait())
                while len(due) > self.backlog_limit:
                    due.popleft()
                    self.tally.skipped_labels += 1
                self._send_labels(client, due, now)
                stop.wait(max(0.0, TICK_S - (time.monotonic() - now)))

    def _send_labels(self, client: httpx.Client, due: deque[tuple[float, dict[str, Any]]], now: float) -> None:
        count = 0
        while count < min(len(due), self.config.max_request) and due[count][0] <= now:
            count += 1
        if not count:
            return
        at_ms = int(time.time() * 1000)
        records = [{**due[i][1], "label_time_ms": at_ms} for i in range(count)]
        accepted = self._post(client, "feedback", records)
        if accepted is None:
            return
        for _ in range(count):
            due.popleft()
        self.tally.accepted_labels += accepted

    def _post(self, client: httpx.Client, kind: str, records: list[dict[str, Any]]) -> int | None:
        """How many records the gateway accepted, or None if the request must be sent again."""
        failure = None
        try:
            response = client.post(f"{self.url}/{kind}", json=records)
            if response.status_code == 200:
                accepted: int = response.json()["accepted"]
                return accepted
            failure = f"{kind}: HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            failure = f"{kind}: {type(exc).__name__}"
        with self._failures_lock:
            self.tally.failures[failure] += 1
        return None


# -- sampling ------------------------------------------------------------------------------------------

JOIN_STATE = "eddy_join_state_size"
PREDICTIONS = "eddy_predictions_total"
LEARNED = "eddy_labels_learned_total"


@dataclass(frozen=True)
class Sample:
    """One look at the stack, ``at_s`` seconds into the load: RSS and pid by process, the learner's
    join state (None before its first batch), predictions made and labels learned so far, the CPU
    seconds each process has used, and each consuming service's lag (records behind the ends of its
    partitions, from ``/healthz``)."""

    at_s: float
    rss_mb: dict[str, float]
    pids: dict[str, int]
    join_state: float | None
    predictions: float
    learned: float
    cpu_s: dict[str, float] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)


def counters(stack: Mapping[str, Any]) -> tuple[float | None, float, float]:
    """The join state (both sides), predictions made and labels learned, from /metrics of learning and inference."""
    services = stack["services"]
    learning = scrape(services["learning"]["url"], (JOIN_STATE, LEARNED))
    inference = scrape(services["inference"]["url"], (PREDICTIONS,))
    sides = [value for (name, _side), value in learning.items() if name == JOIN_STATE]
    join_state = sum(sides) if sides else None
    return join_state, inference.get((PREDICTIONS, ""), 0.0), learning.get((LEARNED, ""), 0.0)


def take_sample(state: Path, at_s: float) -> Sample | None:
    """One sample of the stack in ``state`` (None if its file or a service cannot be read just now)."""
    stack = read_stack(state)
    if stack is None:
        return None
    pids = process_pids(stack)
    rss = {name: mb for name, pid in pids.items() if (mb := rss_mb(pid)) is not None}
    cpu = {name: used for name, pid in pids.items() if (used := cpu_seconds(pid)) is not None}
    try:
        join_state, predictions, learned = counters(stack)
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    return Sample(at_s, rss, pids, join_state, predictions, learned, cpu, consumer_lags(stack))


def consumer_lags(stack: Mapping[str, Any]) -> dict[str, float]:
    """Each service's consumer lag in records (``consumer_lag_total`` of ``/healthz``; absent if it has none).

    A consumer that falls behind holds up to its client's prefetch bound of fetched, unread records: the
    lag next to the RSS tells such growth from a leak.
    """
    lags: dict[str, float] = {}
    for name, info in stack["services"].items():
        lag = service_health(info.get("url"), REQUEST_TIMEOUT_S).get("consumer_lag_total")
        if isinstance(lag, int | float):
            lags[name] = float(lag)
    return lags


def sample_until(state: Path, config: SoakConfig, origin: float, stop: threading.Event) -> list[Sample]:
    """Samples every ``sample_interval_s`` from ``origin`` until ``stop`` (at most one per interval of the run)."""
    samples: list[Sample] = []
    limit = int(config.duration_s / config.sample_interval_s) + 2
    for index in range(limit):
        if stop.wait(max(0.0, origin + index * config.sample_interval_s - time.monotonic())):
            break
        sample = take_sample(state, time.monotonic() - origin)
        if sample is not None:
            samples.append(sample)
    return samples


# -- the verdict ---------------------------------------------------------------------------------------


def fit_slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of ``(t, value)`` points (0 for fewer than two distinct times).

    >>> fit_slope([(0, 1.0), (1, 3.0), (2, 5.0)])
    2.0
    """
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


@dataclass(frozen=True)
class Growth:
    """One series (a process's RSS or the join state) over the run, and what was wrong with it."""

    name: str
    start: float
    end: float
    peak: float
    median: float
    slope_per_min: float
    projected: float
    bound: float
    judged: bool = True
    problems: tuple[str, ...] = ()
    # Of a process: the share of one core it used during the load.
    cpu_percent: float | None = None

    @property
    def passed(self) -> bool:
        return not self.judged or not self.problems

    @property
    def verdict(self) -> str:
        if not self.judged:
            return "not judged"
        return "PASS" if not self.problems else "FAIL: " + "; ".join(self.problems)


def judge_growth(
    name: str,
    points: Sequence[tuple[float, float]],
    config: SoakConfig,
    floor: float,
    judged: bool = True,
    peak_limit: float | None = None,
) -> Growth:
    """The growth of one series after the warm-up, against ``max(floor, growth_fraction x median)``."""
    if not points:
        return Growth(name, 0, 0, 0, 0, 0, 0, floor, judged, ("never sampled",))
    values = [v for _, v in points]
    settled = [(t, v) for t, v in points if t >= config.warmup_s]
    slope = fit_slope(settled)
    median = statistics.median(v for _, v in settled) if settled else values[-1]
    projected = slope * config.duration_s
    bound = max(floor, config.growth_fraction * median)
    problems = []
    if len(settled) < 3:
        problems.append(f"{len(settled)} samples after the warm-up (3 needed)")
    if projected > bound:
        problems.append(f"projected growth {projected:.1f} over the run > {bound:.1f}")
    if peak_limit is not None and max(values) > peak_limit:
        problems.append(f"peak {max(values):.0f} > {peak_limit:.0f}")
    return Growth(
        name, values[0], values[-1], max(values), median, slope * 60, projected, bound, judged, tuple(problems)
    )


@dataclass(frozen=True)
class Check:
    """One check of the run as a whole."""

    name: str
    value: str
    limit: str
    passed: bool


@dataclass(frozen=True)
class SoakVerdict:
    processes: list[Growth]
    join_state: Growth
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.processes) and self.join_state.passed and all(c.passed for c in self.checks)

    def table(self) -> str:
        """Process, RSS start/end/max, slope and projected growth, bound, verdict; then the join state and checks."""
        head = (
            f"{'process':<16} {'start':>7} {'end':>7} {'max':>7} {'MB/min':>8} {'growth':>7} {'bound':>7} "
            f"{'CPU%':>5}  verdict"
        )
        lines = [head]
        for g in [*self.processes, self.join_state]:
            cpu = "" if g.cpu_percent is None else f"{g.cpu_percent:.0f}"
            lines.append(
                f"{g.name:<16} {g.start:>7.1f} {g.end:>7.1f} {g.peak:>7.1f} {g.slope_per_min:>+8.2f} "
                f"{g.projected:>+7.1f} {g.bound:>7.1f} {cpu:>5}  {g.verdict}"
            )
        lines.append("(RSS in MB, CPU in % of one core; the join state in entries, its slope in entries/min)")
        for c in self.checks:
            lines.append(f"{c.name:<40} {c.value:>14}  (limit {c.limit})  {'PASS' if c.passed else 'FAIL'}")
        lines.append(f"verdict: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Outcome:
    """What the run measured: the samples, the load's tally, the counters after the drain, the restarts."""

    samples: list[Sample]
    tally: LoadTally
    predictions: float
    learned: float
    restarts: dict[str, int]


def judge(outcome: Outcome, config: SoakConfig) -> SoakVerdict:
    """Every process's RSS, the join state, and whether the load was delivered and processed."""
    samples = outcome.samples
    names = sorted({name for s in samples for name in s.rss_mb}, key=lambda n: (n in UNJUDGED, n != SUPERVISOR, n))
    processes = []
    for name in names:
        points = [(s.at_s, s.rss_mb[name]) for s in samples if name in s.rss_mb]
        growth = judge_growth(name, points, config, config.growth_floor_mb, judged=name not in UNJUDGED)
        pids = {s.pids[name] for s in samples if name in s.pids}
        restarted = max(len(pids) - 1, outcome.restarts.get(name, 0))
        if restarted and growth.judged:
            growth = replace(growth, problems=(*growth.problems, f"restarted {restarted}x"))
        processes.append(replace(growth, cpu_percent=cpu_percent(samples, name)))
    join_points = [(s.at_s, s.join_state) for s in samples if s.join_state is not None]
    join_floor = config.rate * config.label_delay_s
    join_state = judge_growth("join state", join_points, config, join_floor, peak_limit=config.join_limit)
    return SoakVerdict(processes, join_state, delivery_checks(outcome, config))


def cpu_percent(samples: Sequence[Sample], name: str) -> float | None:
    """The share of one core process ``name`` used over the samples of its last pid (None: too few)."""
    last = [s for s in samples if name in s.cpu_s and s.pids.get(name) == samples[-1].pids.get(name)]
    if len(last) < 2 or last[-1].at_s <= last[0].at_s:
        return None
    return 100 * (last[-1].cpu_s[name] - last[0].cpu_s[name]) / (last[-1].at_s - last[0].at_s)


def delivery_checks(outcome: Outcome, config: SoakConfig) -> list[Check]:
    """The load reached the stack at the rate asked, and the stack kept up with it."""
    tally = outcome.tally
    settled = [(s.at_s, s.predictions) for s in outcome.samples if s.at_s >= config.warmup_s]
    predicting = fit_slope(settled)
    rate_floor = config.min_rate_fraction * config.rate
    labels_floor = config.min_learned_fraction * tally.accepted_labels
    predicted_floor = config.min_predicted_fraction * tally.accepted_events
    return [
        Check(
            "events accepted per second",
            f"{tally.achieved_rate:.0f}",
            f">= {rate_floor:.0f}",
            tally.achieved_rate >= rate_floor,
        ),
        Check(
            "predictions per second after warm-up",
            f"{predicting:.0f}",
            f">= {config.min_rate_fraction * tally.achieved_rate:.0f}",
            predicting >= config.min_rate_fraction * tally.achieved_rate,
        ),
        Check(
            "predictions made (after the drain)",
            f"{outcome.predictions:.0f}",
            f">= {predicted_floor:.0f}",
            outcome.predictions >= predicted_floor and outcome.predictions > 0,
        ),
        Check(
            "labels learned (after the drain)",
            f"{outcome.learned:.0f}",
            f">= {labels_floor:.0f}",
            outcome.learned >= labels_floor and outcome.learned > 0,
        ),
    ]


# -- one run -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakResult:
    config: SoakConfig
    outcome: Outcome
    verdict: SoakVerdict
    elapsed_s: float
    # Seconds spent starting the stack, under load, draining and stopping it.
    phases: dict[str, float] = field(default_factory=dict)
    # The machine's 1-minute load average when the load started and when it ended (others share the cores).
    load_averages: tuple[float, float] = (0.0, 0.0)
    # This process (the load and the sampler) during the load, in % of one core.
    client_cpu_percent: float = 0.0
    # The dashboard's freshness entry and open alert kinds, when the load ended and after the drain.
    freshness: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def report(self) -> str:
        c, tally = self.config, self.outcome.tally
        failures = dict(tally.failures) or "none"
        lines = [
            f"soak: {c.duration_s:.0f}s at {c.rate:.0f} events/s (seed {c.seed}), label delay {c.label_delay_s:g}s, "
            f"{c.unlabelled_share:.0%} unlabelled, allowed lateness {c.allowed_lateness_s:g}s, "
            f"warm-up {c.warmup_s:.0f}s, a sample every {c.sample_interval_s:g}s, "
            f"{'scaled' if c.scaled_bounds else 'default'} id memories",
            f"{self.elapsed_s:.0f}s in all: " + ", ".join(f"{name} {s:.0f}s" for name, s in self.phases.items()),
            f"machine load average (1 min): {self.load_averages[0]:.1f} at the start of the load, "
            f"{self.load_averages[1]:.1f} at its end; the load and sampler used "
            f"{self.client_cpu_percent:.0f}% of a core",
            f"load: {tally.accepted_events} events and {tally.accepted_labels} labels accepted of {tally.planned} "
            f"planned, {tally.skipped} events and {tally.skipped_labels} labels skipped; client failures: {failures}",
            f"growth bound: max({c.growth_floor_mb:g} MB, {c.growth_fraction:.0%} of the median after warm-up); "
            f"join state within {c.join_limit:.0f} entries",
            self.verdict.table(),
            lag_summary(self.outcome.samples, c),
        ]
        if c.learner_speed is not None:
            held = learner_input_rate(c) * c.learner_speed
            lines.append(f"learner held at {c.learner_speed:.0%} of its input rate: {held:g} records/s")
        lines += [f"freshness {when}: {seen}" for when, seen in self.freshness.items()]
        return "\n".join(lines)


def lag_summary(samples: Sequence[Sample], config: SoakConfig) -> str:
    """Each consuming service's lag after the warm-up: its peak, median and last value, in records.

    Reported, not judged: a consumer that falls behind and catches up is no fault, and one that stays
    behind fails the delivery checks. It tells which RSS growth is fetched input waiting to be read.
    """
    settled = [s for s in samples if s.at_s >= config.warmup_s]
    names = sorted({name for s in settled for name in s.lag})
    parts = []
    for name in names:
        values = [s.lag[name] for s in settled if name in s.lag]
        parts.append(f"{name} {max(values):,.0f}/{statistics.median(values):,.0f}/{values[-1]:,.0f}")
    return "consumer lag after warm-up, peak/median/last (records): " + (", ".join(parts) or "not sampled")


def drain(state: Path, tally: LoadTally, timeout_s: float) -> tuple[float, float]:
    """Wait (at most ``timeout_s``) until every accepted event is predicted and every label learned."""
    deadline = time.monotonic() + timeout_s
    predictions = learned = 0.0
    while True:
        stack = read_stack(state)
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError, TypeError):
            _, predictions, learned = counters(stack or {})
        caught_up = predictions >= tally.accepted_events and learned >= tally.accepted_labels
        if caught_up or time.monotonic() >= deadline:
            return predictions, learned
        time.sleep(DRAIN_POLL_S)


def run_soak(config: SoakConfig, workdir: Path) -> SoakResult:
    """One soak run in ``workdir`` (a fresh directory): the stack up, load and samples, drain, verdict, down."""
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    state = workdir / "state"
    phases: dict[str, float] = {}
    with running_stack(config, workdir):
        phases["up"] = time.monotonic() - began
        stack = read_stack(state) or {}
        load = SoakLoad(config, stack["services"]["ingestion"]["url"])
        stop = threading.Event()
        samples: list[Sample] = []
        origin = time.monotonic()
        load_at_start = os.getloadavg()[0]
        client_cpu = time.process_time()
        sampler = threading.Thread(
            target=lambda: samples.extend(sample_until(state, config, origin, stop)), name="soak-sampler"
        )
        sampler.start()
        try:
            tally = load.run(stop)
        finally:
            stop.set()
            sampler.join()
        phases["load"] = time.monotonic() - origin
        freshness = {"when the load ended": dashboard_freshness(stack)}
        load_averages = (load_at_start, os.getloadavg()[0])
        client_cpu_percent = 100 * (time.process_time() - client_cpu) / phases["load"]
        drained = time.monotonic()
        predictions, learned = drain(state, tally, config.drain_timeout_s)
        phases["drain"] = time.monotonic() - drained
        # The learner publishes its last snapshot after its last batch (a held one, after its hold).
        freshness["after the drain"] = dashboard_freshness(stack, until_fresh_s=config.drain_timeout_s)
        final = read_stack(state) or {"services": {}}
        restarts = {name: int(info.get("restarts", 0)) for name, info in final["services"].items()}
        stopping = time.monotonic()
    phases["down"] = time.monotonic() - stopping
    outcome = Outcome(samples, tally, predictions, learned, restarts)
    elapsed = time.monotonic() - began
    verdict = judge(outcome, config)
    return SoakResult(config, outcome, verdict, elapsed, phases, load_averages, client_cpu_percent, freshness)


def dashboard_freshness(stack: Mapping[str, Any], until_fresh_s: float = 0.0) -> dict[str, Any]:
    """The monitoring dashboard's ``freshness`` entry and open alert kinds ({} if it does not answer).

    ``until_fresh_s``: read again, for at most that long, until the freshness lag is 0.
    """
    url = (stack.get("services") or {}).get("monitoring", {}).get("url")
    deadline = time.monotonic() + until_fresh_s
    while True:
        try:
            document = httpx.get(f"{url}/api/dashboard", params={"stream": STREAM}, timeout=REQUEST_TIMEOUT_S).json()
        except (httpx.HTTPError, ValueError, TypeError):
            document = {}
        freshness = document.get("freshness")
        if (freshness and freshness["lag_s"] == 0) or time.monotonic() >= deadline:
            alerts = sorted(a["kind"] for a in document.get("alerts", []))
            return {"freshness": freshness, "alerts": alerts} if document else {}
        time.sleep(DRAIN_POLL_S)

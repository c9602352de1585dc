"""Whole-pipeline cost: every process's CPU time over a window, divided by the events in it.

Runs ``eddy up --demo --broker B --rate R`` (the whole embedded stack, on Tansu or on a local Apache
Kafka). After a warm-up it reads, at the start and at the end of a window, the CPU time (utime + stime
from ``/proc/PID/stat``, all threads) of every process of the stack, and the high watermarks of
``demo.events``. The figure per process is its CPU seconds over the window divided by the events
produced in it, in µs per event. Processes are grouped as in ``stack.json``: eddy's services (the
schema registry, the six services and ``eddy up`` itself), the demo feed (the load generator: what a
user's producer would spend) and the broker, each reported separately. Nothing reads the stream in the
benchmark process during the window, so it adds no load but the watermark queries.

Run: ``.venv/bin/python -m bench.bench_cost [--broker tansu --broker kafka] [--rate 5000] [--seconds 60]``.
Bounded in time: each stack gets at most its start-up timeout, the warm-up and the window.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from eddy.core.settings import REPO_ROOT, Settings
from eddy.kafka.client import consumer_config
from eddy.stack.supervisor import terminate
from eddy.stack.up import SERVICES, read_stack

from bench.machine import describe

CLK_TCK = os.sysconf("SC_CLK_TCK")
BROKERS = ("tansu", "kafka")
# eddy's own processes: every service, the schema registry and the supervisor (`eddy up`).
EDDY = ("eddy up", "schema_registry", *SERVICES)
LOAD = "demo-feed"
BROKER = "broker"
# The benchmark's own readers, when a benchmark measures latency in the same window: shown, not in any total.
READERS = "bench readers (this process)"
START_TIMEOUT_S = 180.0
# The demo's concept drift, by default beyond any run: a steady stream, so that every run does the same
# work (a drift brings challengers, which predict in shadow and learn, and its timing differs by run).
NO_DRIFT = 10**12
STOP_TIMEOUT_S = 60.0


def broker_kinds(values: list[str] | None) -> list[str]:
    """``--broker`` given any number of times, or ``both``; Tansu alone by default."""
    kinds: list[str] = []
    for value in values or ["tansu"]:
        for kind in BROKERS if value == "both" else (value,):
            if kind not in BROKERS:
                raise SystemExit(f"unknown broker {kind!r}: choose tansu, kafka or both")
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (every thread), in seconds; None once it is gone.

    >>> cpu_seconds(os.getpid()) is not None
    True
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5) (utime, stime); fields[0] here is field 3 (state).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (children, grandchildren, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return found


def stack_processes(stack: dict[str, Any], up_pid: int) -> dict[str, list[int]]:
    """Role -> pids: each service of ``stack.json``, ``broker``, ``eddy up``, and ``other`` for the rest."""
    roles: dict[str, list[int]] = {"eddy up": [up_pid], BROKER: list(stack.get("broker_pids") or [])}
    for name, info in (stack.get("services") or {}).items():
        if info.get("pid"):
            roles[name] = [int(info["pid"])]
    known = {pid for pids in roles.values() for pid in pids}
    others = sorted(descendants(up_pid) - known)
    if others:
        roles["other"] = others
    return roles


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]
    pids: dict[str, list[int]]
    offsets: dict[str, int] = field(default_factory=dict)


class Meter:
    """Samples the stack's CPU per role and the topics' high watermarks, cheaply."""

    def __init__(self, settings: Settings, roles: dict[str, list[int]], topics: tuple[str, ...]) -> None:
        self.roles = roles
        self.topics = topics
        self.consumer = Consumer(consumer_config(settings, f"bench-cost-{uuid.uuid4().hex[:6]}"))
        self.partitions = {
            t: sorted(self.consumer.list_topics(t, timeout=10).topics[t].partitions) for t in self.topics
        }

    def sample(self) -> Sample:
        from confluent_kafka import TopicPartition

        offsets = {
            topic: sum(
                self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in partitions
            )
            for topic, partitions in self.partitions.items()
        }
        cpu = {role: sum(cpu_seconds(pid) or 0.0 for pid in pids) for role, pids in self.roles.items()}
        return Sample(time.monotonic(), cpu, {r: list(p) for r, p in self.roles.items()}, offsets)

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Cost:
    """CPU over one window: seconds per role, events in it, and what the window was."""

    broker: str
    rate: float
    seconds: float
    events: int
    outputs: dict[str, int]
    cpu: dict[str, float]
    restarted: list[str]

    def us_per_event(self, role: str) -> float:
        return self.cpu.get(role, 0.0) / max(self.events, 1) * 1e6

    def cores(self, role: str) -> float:
        return self.cpu.get(role, 0.0) / self.seconds

    @property
    def eddy_roles(self) -> list[str]:
        return [r for r in EDDY if r in self.cpu]

    def group(self, roles: list[str]) -> float:
        return sum(self.cpu.get(r, 0.0) for r in roles)


def window_cost(broker: str, rate: float, start: Sample, end: Sample, events_topic: str) -> Cost:
    """The cost of the window between two samples; call it while the stack still runs (it checks the pids)."""
    restarted = [r for r, pids in end.pids.items() if any(cpu_seconds(p) is None for p in pids)]
    return Cost(
        broker=broker,
        rate=rate,
        seconds=end.at - start.at,
        events=end.offsets[events_topic] - start.offsets[events_topic],
        outputs={t: end.offsets[t] - start.offsets[t] for t in end.offsets},
        cpu={r: end.cpu[r] - start.cpu.get(r, 0.0) for r in end.cpu},
        restarted=restarted,
    )


def cost_table(costs: list[Cost]) -> str:
    """Per process µs of CPU per event (and cores), one column per run; groups and totals below."""
    head = "| process | " + " | ".join(f"{c.broker} µs/event (cores)" for c in costs) + " |"
    lines = [head, "|---|" + "---:|" * len(costs)]
    roles = [*EDDY, LOAD, BROKER, "other", READERS]

    def cell(c: Cost, cpu: float) -> str:
        return f"{cpu / max(c.events, 1) * 1e6:,.1f} ({cpu / c.seconds:.2f})"

    for role in roles:
        if any(role in c.cpu for c in costs):
            lines.append(f"| {role} | " + " | ".join(cell(c, c.cpu.get(role, 0.0)) for c in costs) + " |")
    groups = (
        ("**eddy's services, all together**", lambda c: c.group(c.eddy_roles)),
        ("demo feed (load generator)", lambda c: c.group([LOAD])),
        ("broker", lambda c: c.group([BROKER])),
        ("whole stack", lambda c: sum(cpu for role, cpu in c.cpu.items() if role != READERS)),
    )
    for label, total in groups:
        lines.append(f"| {label} | " + " | ".join(cell(c, total(c)) for c in costs) + " |")
    lines.append("| events in the window | " + " | ".join(f"{c.events:,} in {c.seconds:.1f} s" for c in costs) + " |")
    for topic in costs[0].outputs:
        lines.append(f"| records written to {topic} | " + " | ".join(f"{c.outputs[topic]:,}" for c in costs) + " |")
    return "\n".join(lines)


class StackDidNotStart(RuntimeError):
    pass


@contextmanager
def demo_stack(
    broker: str,
    rate: float,
    *,
    label_delay_s: float = 1.0,
    drift_at: int = NO_DRIFT,
    env_extra: dict[str, str] | None = None,
) -> Iterator[tuple[dict[str, Any], subprocess.Popen, Path]]:
    """``eddy up --demo --broker B --rate R`` in a fresh state directory; yields (stack.json, process, state)."""
    state = Path(tempfile.mkdtemp(prefix=f"eddy-bench-{broker}-")) / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
    env["EDDY_STATE_DIR"] = str(state)
    env.update(env_extra or {})
    argv = [sys.executable, "-m", "eddy.cli.main", "up", "--demo", "--broker", broker, "--rate", str(rate)]
    argv += ["--label-delay", str(label_delay_s), "--drift-at", str(drift_at)]
    state.parent.mkdir(parents=True, exist_ok=True)
    with open(state.parent / "up.log", "ab") as out:
        up = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (read_stack(state) or {}).get("ready") and time.monotonic() < deadline and up.poll() is None:
            time.sleep(0.2)
        stack = read_stack(state)
        if not stack or not stack.get("ready"):
            raise StackDidNotStart(f"the stack on {broker} did not start; see {state.parent / 'up.log'}")
        yield stack, up, state
    finally:
        terminate(up, STOP_TIMEOUT_S)


def stack_settings(stack: dict[str, Any], fetch_wait_ms: int = 10) -> Settings:
    return Settings(
        bootstrap_servers=stack["bootstrap_servers"],
        schema_registry_url=stack["schema_registry_url"],
        fetch_wait_max_ms=fetch_wait_ms,
        session_timeout_ms=6000,
    )


COST_TOPICS = ("demo.events", "demo.validated", "demo.predictions", "demo.feedback", "demo.labeled")


def measure_cost(broker: str, rate: float, warmup_s: float, seconds: float, drift_at: int = NO_DRIFT) -> Cost:
    try:
        return measure_cost_once(broker, rate, warmup_s, seconds, drift_at)
    except StackDidNotStart as exc:
        print(f"{exc}; trying once more", flush=True)
        return measure_cost_once(broker, rate, warmup_s, seconds, drift_at)


def measure_cost_once(broker: str, rate: float, warmup_s: float, seconds: float, drift_at: int) -> Cost:
    with demo_stack(broker, rate, drift_at=drift_at) as (stack, up, _):
        time.sleep(warmup_s)
        # Services started by now; read their pids again in case one was restarted during start-up.
        stack = read_stack(Path(stack["state_dir"])) or stack
        meter = Meter(stack_settings(stack), stack_processes(stack, up.pid), COST_TOPICS)
        try:
            start = meter.sample()
            time.sleep(seconds)
            end = meter.sample()
            return window_cost(broker, rate, start, end, "demo.events")
        finally:
            meter.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", action="append", help="tansu, kafka or both; repeat for several")
    parser.add_argument("--rate", type=float, action="append", help="events/s of the demo feed; repeatable")
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument(
        "--drift-at", type=int, default=NO_DRIFT, help="demo event of the concept drift (default: none in the run)"
    )
    args = parser.parse_args()
    brokers = broker_kinds(args.broker)
    rates = args.rate or [5000.0]
    print(f"machine: {describe()}")
    for rate in rates:
        costs = []
        for broker in brokers:
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            load = os.getloadavg()[0]
            cost = measure_cost(broker, rate, args.warmup, args.seconds, args.drift_at)
            print(f"{broker}: window started after {args.warmup:.0f} s warm-up; run began {started}, load {load:.2f}")
            if cost.restarted:
                print(f"  WARNING: restarted or gone during the window: {', '.join(cost.restarted)}")
            costs.append(cost)
        print(f"\nrate {rate:,.0f} events/s, window {args.seconds:.0f} s")
        print(cost_table(costs))


if __name__ == "__main__":
    main()

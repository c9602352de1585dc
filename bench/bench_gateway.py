"""Load on the HTTP ingestion gateway (``POST /v1/streams/demo/events``), beside a bare aiohttp baseline.

Starts its own embedded broker (Tansu), schema registry and ingestion service on
loopback, then drives them with one httpx ``AsyncClient`` in two modes:

- **fixed rate** (open loop): requests are scheduled by the clock, ``--rate``
  events/s in batches of ``--batch``, for ``--duration`` seconds, whatever the
  server's answers take. Latency is measured from each request's *scheduled*
  time, so a server that falls behind shows it (no coordinated omission);
- **max throughput** (closed loop): ``--concurrency`` clients, each sending its
  next request as soon as the previous one is answered, for ``--max-duration``
  seconds per concurrency level.

The baseline runs the same client, the same bodies and the same modes against a
bare aiohttp handler that reads the body and returns ``{}`` (in its own
process), so the client's own ceiling on this machine is visible. At the end the
records in ``demo.events`` are counted: each 200 must have put ``--batch`` events
into Kafka. The issue's target is at least 5,000 events/s in batches of 100.

Run: ``.venv/bin/python -m bench.bench_gateway [--duration 30] [--max-duration 10] [--rate 5000] [--batch 100]``.
Loopback only; bounded in time (every phase has a deadline) and in count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from eddy.core.settings import REPO_ROOT, Settings
from eddy.kafka.client import consumer_config
from eddy.stack.embedded import free_port, start_tansu
from eddy.stack.up import wait_http

from bench.machine import describe

STREAM = "demo"
PATH = f"/v1/streams/{STREAM}/events"
TARGET_EVENTS_PER_S = 5_000
DISTINCT_BODIES = 256
MAX_IN_FLIGHT = 512
REQUEST_TIMEOUT_S = 10.0
COUNT_TIMEOUT_S = 60.0
REGIONS = ("north", "south", "east", "west", None)


# -- the baseline server ----------------------------------------------------------------------------------------


def run_baseline_server(port: int) -> None:
    """A bare aiohttp app: read the body, answer ``{}``. The HTTP-stack ceiling, without any eddy work."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"{}", content_type="application/json")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(body=b"{}", content_type="application/json")

    async def main() -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/streams/{stream}/events", handler)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# -- the client -------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What one mode against one server measured."""

    target: str
    mode: str
    setting: str
    batch: int
    seconds: float = 0.0
    ok: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return self.ok + sum(self.errors.values())

    @property
    def events_per_s(self) -> float:
        return self.ok * self.batch / self.seconds if self.seconds else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]

    def error_text(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"


class Bodies:
    """Request bodies with event ids never sent before (the gateway acknowledges a repeated id without producing it).

    The JSON is built once per template; each request only stamps its own number into the ids.
    """

    MARK = b"@req@"

    def __init__(self, batch: int, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.templates = []
        for _ in range(DISTINCT_BODIES):
            events = [
                {
                    "event_id": f"{self.MARK.decode()}-{i}",
                    "x0": round(rng.uniform(0, 10), 3),
                    "x1": round(rng.uniform(0, 10), 3),
                    "x2": round(rng.uniform(0, 10), 3),
                    "region": rng.choice(REGIONS),
                }
                for i in range(batch)
            ]
            self.templates.append(json.dumps(events).encode())
        self.batch = batch
        self.prefix = uuid.uuid4().hex[:8]
        self.sent = 0

    def next(self) -> bytes:
        n = self.sent
        self.sent += 1
        return self.templates[n % len(self.templates)].replace(self.MARK, f"{self.prefix}{n:09d}".encode())

    @property
    def mean_bytes(self) -> float:
        stamped = len(self.prefix) + 9 - len(self.MARK)
        return statistics.mean(len(t) for t in self.templates) + stamped * self.batch


def client(connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S)


async def send(http: httpx.AsyncClient, url: str, body: bytes, since: float, run: Run) -> None:
    """One request; its latency counts from ``since`` (the scheduled time in open loop, the send in closed loop)."""
    try:
        response = await http.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        run.errors[type(exc).__name__] += 1
        return
    run.latencies_ms.append((time.perf_counter() - since) * 1000)
    if response.status_code == 200:
        run.ok += 1
    else:
        run.errors[str(response.status_code)] += 1


async def open_loop(target: str, base: str, bodies: Bodies, rate: float, batch: int, duration: float) -> Run:
    """Requests scheduled by the clock at ``rate`` events/s; a server that is slow only makes them pile up."""
    run = Run(target, "fixed rate", f"{rate:,.0f} ev/s", batch)
    per_s = rate / batch
    total = int(per_s * duration)
    in_flight: set[asyncio.Task[None]] = set()
    async with client(64) as http:
        started = time.perf_counter()
        for i in range(total):
            due = started + i / per_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= MAX_IN_FLIGHT:
                run.errors["skipped: client at its in-flight cap"] += 1
                continue
            task = asyncio.create_task(send(http, base + PATH, bodies.next(), due, run))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=REQUEST_TIMEOUT_S + 5)
        for task in [t for t in in_flight if not t.done()]:  # only after a stall: each request has a timeout
            task.cancel()
            run.errors["unfinished at the end"] += 1
        run.seconds = max(duration, time.perf_counter() - started)
    return run


async def closed_loop(target: str, base: str, bodies: Bodies, concurrency: int, batch: int, duration: float) -> Run:
    """``concurrency`` clients, each sending again as soon as it has its answer."""
    run = Run(target, "max throughput", f"{concurrency} clients", batch)
    async with client(concurrency) as http:
        started = time.perf_counter()
        stop_at = started + duration

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                await send(http, base + PATH, bodies.next(), time.perf_counter(), run)

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), duration + 30)
        run.seconds = time.perf_counter() - started
    return run


# -- the stack --------------------------------------------------------------------------------------------------


class Processes:
    """The child processes this run started, stopped in reverse order whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))
        return proc

    def adopt(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.procs.append((name, proc))

    def log_tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def count_events(bootstrap: str, topic: str, expect: int) -> int:
    """Records in ``topic``, read from the beginning (Tansu's "latest" offsets cannot be trusted)."""
    settings = Settings(bootstrap_servers=bootstrap, fetch_wait_max_ms=10)
    consumer = Consumer(consumer_config(settings, f"bench-count-{uuid.uuid4().hex[:6]}"))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen = 0
    deadline = time.monotonic() + COUNT_TIMEOUT_S
    quiet_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            got = [m for m in consumer.consume(10_000, 0.2) if not m.error()]
            seen += len(got)
            if got:
                quiet_since = time.monotonic()
            elif seen >= expect and time.monotonic() - quiet_since > 2.0:
                break
    finally:
        consumer.close()
    return seen


# -- report -----------------------------------------------------------------------------------------------------


def table(runs: list[Run]) -> str:
    head = (
        "| server | mode | load | requests | events/s | requests/s | p50 ms | p95 ms | p99 ms | errors |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|"
    )
    rows = [
        f"| {r.target} | {r.mode} | {r.setting} | {r.requests:,} | {r.events_per_s:,.0f} | {r.requests_per_s:,.1f} "
        f"| {r.percentile(50):.1f} | {r.percentile(95):.1f} | {r.percentile(99):.1f} | {r.error_text()} |"
        for r in runs
    ]
    return "\n".join([head, *rows])


# -- main -------------------------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, gateway: str, baseline: str, bodies: Bodies) -> tuple[list[Run], int]:
    runs: list[Run] = []
    # Warm-up (not reported): topic metadata, the first schema lookups, connection set-up.
    warm = await closed_loop("warm-up", gateway, bodies, 4, args.batch, 2.0)
    accepted = warm.ok * args.batch
    for target, base in (("eddy gateway", gateway), ("baseline: bare aiohttp {}", baseline)):
        run = await open_loop(target, base, bodies, args.rate, args.batch, args.duration)
        runs.append(run)
        if target == "eddy gateway":
            accepted += run.ok * args.batch
        print(f"  {target}, fixed rate: {run.events_per_s:,.0f} events/s, errors: {run.error_text()}", flush=True)
    for concurrency in args.concurrency:
        for target, base in (("eddy gateway", gateway), ("baseline: bare aiohttp {}", baseline)):
            run = await closed_loop(target, base, bodies, concurrency, args.batch, args.max_duration)
            runs.append(run)
            if target == "eddy gateway":
                accepted += run.ok * args.batch
            print(f"  {target}, {concurrency} clients: {run.events_per_s:,.0f} events/s", flush=True)
    return runs, accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the fixed-rate run (per server)")
    parser.add_argument("--rate", type=float, default=float(TARGET_EVENTS_PER_S), help="events/s of the fixed rate")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--max-duration", type=float, default=10.0, help="seconds per max-throughput run")
    parser.add_argument(
        "--concurrency",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=[1, 4, 16],
        help="comma-separated client counts of the max-throughput runs",
    )
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        run_baseline_server(args.baseline_server)
        return 0
    if not 1 <= args.batch <= 10_000 or args.duration <= 0 or args.max_duration <= 0 or args.rate <= 0:
        parser.error("--batch must be 1..10000 and --duration, --max-duration and --rate positive")
    if args.duration > 600 or args.max_duration > 120:
        parser.error("bounded runs only: --duration at most 600 s, --max-duration at most 120 s")

    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    procs = Processes(workdir)
    failed = True
    try:
        broker, bootstrap = start_tansu(log_path=workdir / "tansu.log")
        procs.adopt("tansu", broker)
        registry_port, gateway_port, baseline_port = free_port(), free_port(), free_port()
        registry_url = f"http://127.0.0.1:{registry_port}"
        registry_argv = ["-m", "eddy.services.schema_registry", "--host", "127.0.0.1", "--port", str(registry_port)]
        procs.start("registry", [sys.executable, *registry_argv, "--data-dir", str(workdir / "registry")])
        wait_http(f"{registry_url}/subjects", 30)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
        env |= {
            "EDDY_BOOTSTRAP_SERVERS": bootstrap,
            "EDDY_SCHEMA_REGISTRY_URL": registry_url,
            "EDDY_HTTP_PORT": str(gateway_port),
            "EDDY_SESSION_TIMEOUT_MS": "6000",
            "EDDY_FETCH_WAIT_MAX_MS": "10",
            "EDDY_STATE_DIR": str(workdir / "state"),
            "EDDY_STREAMS": STREAM,
            "EDDY_LOG_LEVEL": "WARNING",
        }
        procs.start("ingestion", [sys.executable, "-m", "eddy.services.ingestion"], env)
        procs.start("baseline", [sys.executable, "-m", "bench.bench_gateway", "--baseline-server", str(baseline_port)])
        gateway, baseline = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{baseline_port}"
        try:
            wait_http(f"{gateway}/healthz", 60)
            wait_http(f"{baseline}/healthz", 30)
        except Exception:
            print(procs.log_tail("ingestion"), file=sys.stderr)
            raise
        bodies = Bodies(args.batch)
        print(f"request bodies: {args.batch} events, about {bodies.mean_bytes / 1024:.1f} KiB", flush=True)
        runs, accepted = asyncio.run(measure(args, gateway, baseline, bodies))
        landed = count_events(bootstrap, f"{STREAM}.events", accepted)
        failed = False
    finally:
        procs.stop_all()
        if failed:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    best = max(
        (r for r in runs if r.target == "eddy gateway" and r.mode == "max throughput"), key=lambda r: r.events_per_s
    )
    fixed = next(r for r in runs if r.target == "eddy gateway" and r.mode == "fixed rate")
    print()
    print(
        f"machine: {describe()}; embedded broker "
        f"(Tansu), registry, ingestion, baseline server and this client all on loopback, unpinned"
    )
    print(
        f"batch {args.batch} events/request; fixed rate {args.rate:,.0f} events/s for {args.duration:.0f} s; "
        f"max throughput {args.max_duration:.0f} s per level; latency of fixed-rate rows from the scheduled send time"
    )
    print()
    print(table(runs))
    print()
    verdict = "PASS" if best.events_per_s >= TARGET_EVENTS_PER_S else "FAIL"
    print(
        f"target >= {TARGET_EVENTS_PER_S:,} events/s in batches of 100: **{verdict}**, ceiling "
        f"{best.events_per_s:,.0f} events/s ({best.setting}); fixed rate achieved {fixed.events_per_s:,.0f} events/s "
        f"with errors: {fixed.error_text()}"
    )
    print(f"demo.events holds {landed:,} records; the gateway acknowledged {accepted:,} events with a 200")
    return 0 if landed >= accepted else 1


if __name__ == "__main__":
    sys.exit(main())

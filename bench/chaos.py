"""The long chaos run: N seeded fault runs of the whole embedded stack, a verdict table each, and a summary.

Run: ``.venv/bin/python -m bench.chaos --runs 20 --seed 1`` (one to two and a half minutes a run on two cores).
Run ``i`` uses seed ``seed + i``: its events, labels and faults are the seed's, so a failing run is
repeated with ``--runs 1 --seed S``. Each run is bounded in count and time (``tests/chaos/harness.py``);
the short version CI runs is ``tests/chaos/test_chaos.py``. Results go in ``docs/reliability.md``.

``--transactions`` turns on ``EDDY_KAFKA_TRANSACTIONS`` for the stack's services (each stream-loop
batch's output and input offsets in one Kafka transaction; their consumers read committed) and makes
the checker read with ``isolation.level=read_committed``. On a real Kafka named by
``EDDY_BOOTSTRAP_SERVERS`` that checks the transactional mode itself. On the embedded broker it runs
too, with a printed caveat: Tansu shows aborted records to read_committed readers, so there the result
only says that idempotence still holds with transactional writers (``docs/reliability.md``).

``--broker kafka`` runs the stack on a single Apache Kafka node instead of Tansu. ``--broker-faults N``
runs it on a 3-node KRaft cluster of the harness's own (stream topics with replication factor 3,
``min.insync.replicas=2``; producers use ``acks=all``) and sends N faults to its brokers, the active
controller and the stream's partition leaders among them, during the load and the service faults
(``tests/chaos/broker_faults.py``). With ``--transactions`` on Kafka no service may redeliver at all.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.machine import describe
from tests.chaos import checker
from tests.chaos.faults import ALL_SERVICES
from tests.chaos.harness import SESSION_TIMEOUT_MS, RunConfig, RunResult, run_once

TRANSACTIONS_CAVEAT = (
    "transactions: on, against the EMBEDDED broker (Tansu). Caveat: Tansu shows aborted transactional records "
    "to read_committed readers, so read_committed is not trustworthy here: a pass means idempotence still "
    "holds with transactional writers, not that transactions gave exactly-once. For that, run against real "
    "Kafka (EDDY_BOOTSTRAP_SERVERS)."
)


def summary(results: list[RunResult]) -> str:
    """One line per run and the totals the acceptance criteria name."""
    lines = [
        f"{'seed':>5}  {'verdict':<7}  {'events':>6}  {'faults':>6}  {'lost':>4}  {'learned2x':>9}  "
        f"{'served2x':>8}  {'redeliv':>7}  {'max/fault':>9}  {'bound':>5}  {'bfaults':>7}  {'aborted':>7}  {'secs':>5}"
    ]
    for r in results:
        v = r.verdict
        lost = sum(v.check(name).count for name in checker.LOST)
        redelivery = v.check(checker.REDELIVERIES)
        total = sum(r.records for r in v.redeliveries_by_fault)
        applied = sum(1 for f in r.faults if f.injected_ms is not None)
        broker = sum(1 for b in r.broker_faults if b.injected_ms is not None)
        hidden = r.verdict.checks[-1].count if r.verdict.checks[-1].name == checker.ABORTED else 0
        lines.append(
            f"{r.config.seed:>5}  {'PASS' if r.passed else 'FAIL':<7}  {len(r.load.accepted_events()):>6}  "
            f"{applied:>6}  {lost:>4}  {v.check(checker.LEARNED_TWICE).count:>9}  "
            f"{v.check(checker.SERVED_TWICE).count:>8}  {total:>7}  "
            f"{redelivery.count:>9}  {redelivery.limit:>5}  {broker:>7}  {hidden:>7}  {r.elapsed_s:>5.0f}"
        )
    lines += totals(results)
    failed = [r.config.seed for r in results if not r.passed]
    lines.append(
        f"{len(results) - len(failed)}/{len(results)} runs passed" + (f"; failed seeds {failed}" if failed else "")
    )
    return "\n".join(lines)


def totals(results: list[RunResult]) -> list[str]:
    """Sums over every run: the faults applied by kind and service, and the counts the criteria name."""
    applied = [f for r in results for f in r.faults if f.injected_ms is not None]
    kinds = Counter(
        f.fault.kind if f.fault.kind != "SIGSTOP" or f.fault.pause_s < SESSION_TIMEOUT_MS / 1000 else "SIGSTOP>session"
        for f in applied
    )
    services = Counter(f.fault.service for f in applied)
    brokers = [b for r in results for b in r.broker_faults if b.injected_ms is not None]
    broker_kinds = Counter(f"{b.fault.kind} {b.fault.role}" for b in brokers)
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(broker_kinds.items()))
    lost = sum(r.verdict.check(name).count for r in results for name in checker.LOST)
    twice = sum(r.verdict.check(checker.LEARNED_TWICE).count for r in results)
    served = sum(r.verdict.check(checker.SERVED_TWICE).count for r in results)
    redelivered = sum(d.records for r in results for d in r.verdict.redeliveries_by_fault)
    worst = max((r.verdict.check(checker.REDELIVERIES).count for r in results), default=0)
    stuck = sum(c.count for r in results for c in r.verdict.checks if c.name == checker.STUCK_EXITS)
    return [
        f"faults applied: {len(applied)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})",
        f"  by service: {', '.join(f'{k} {n}' for k, n in sorted(services.items()))}",
        *([f"broker faults applied: {len(brokers)} ({by_kind})"] if brokers else []),
        f"totals: lost {lost}, labels learned twice {twice}, served twice {served}, "
        f"raw redeliveries {redelivered} (most after one fault: {worst}); exits for a stuck client call {stuck}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1, help="seed of the first run; run i uses seed + i")
    parser.add_argument("--events", type=int, default=18_000, help="events per run")
    parser.add_argument("--rate", type=float, default=400.0, help="events per second")
    parser.add_argument("--faults", type=int, default=8, help="faults per run")
    parser.add_argument("--batch-size", type=int, default=500, help="EDDY_BATCH_SIZE of the stack")
    parser.add_argument("--targets", default=",".join(ALL_SERVICES), help="services faults may hit")
    parser.add_argument("--workdir", type=Path, default=None, help="keep each run's state and logs here")
    parser.add_argument(
        "--transactions", action="store_true", help="services write transactionally; the checker reads committed"
    )
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu", help="the broker the stack starts")
    parser.add_argument(
        "--broker-faults", type=int, default=0, help="run on a 3-node Kafka cluster and fault its brokers this often"
    )
    args = parser.parse_args()
    external = bool(os.environ.get("EDDY_BOOTSTRAP_SERVERS"))
    if args.transactions:
        on_tansu = args.broker == "tansu" and not args.broker_faults and not external
        print(TRANSACTIONS_CAVEAT if on_tansu else "transactions: on, against Apache Kafka", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="eddy-chaos-"))
    targets = tuple(t for t in args.targets.split(",") if t)
    print(f"machine: {describe()}; {time.strftime('%Y-%m-%d %H:%M %Z')}; work dir {workdir}", flush=True)
    # SIGTERM unwinds like Ctrl-C: the running stack is stopped and the runs so far are summed up.
    signal.signal(signal.SIGTERM, _interrupted)
    results: list[RunResult] = []
    try:
        _run_all(args, workdir, targets, external, results)
    except KeyboardInterrupt:
        print(f"interrupted after {len(results)} of {args.runs} runs", flush=True)
    print(summary(results), flush=True)
    return 0 if results and all(r.passed for r in results) else 1


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _run_all(
    args: argparse.Namespace, workdir: Path, targets: tuple[str, ...], external: bool, results: list[RunResult]
) -> None:
    for i in range(args.runs):
        config = RunConfig(
            seed=args.seed + i,
            events=args.events,
            rate=args.rate,
            faults=args.faults,
            targets=targets,
            batch_size=args.batch_size,
            isolation="read_committed" if args.transactions else "read_uncommitted",
            transactions=args.transactions,
            broker=args.broker,
            broker_faults=args.broker_faults,
            # An external broker keeps earlier runs' topics: each run gets a stream of its own there.
            stream_name=f"chaos{args.seed + i}x{uuid.uuid4().hex[:6]}" if external and not args.broker_faults else "",
        )
        result = run_once(config, workdir / f"seed{config.seed}")
        results.append(result)
        print(result.report + "\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())

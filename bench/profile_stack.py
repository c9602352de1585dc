"""Where the demo stack's CPU goes: py-spy profiles of every service, under load, on either broker.

Starts ``eddy up --demo --broker B --rate R`` (a steady stream, as ``bench_cost``), waits for the warm-up,
then samples every Python service at once with ``py-spy record --nonblocking`` (``pip install py-spy``)
for ``--seconds``, idle threads left out. Per service it prints the functions with the most samples of
their own (self) and including their callees (total), as shares of that service's samples, beside its
CPU over the same window.

Run: ``.venv/bin/python -m bench.profile_stack --broker kafka --rate 5000 --seconds 20``. Bounded in time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from eddy.stack.up import read_stack

from bench.bench_cost import NO_DRIFT, cpu_seconds, demo_stack
from bench.machine import describe

SERVICES = ("validation", "inference", "learning", "monitoring", "retraining")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def frame_name(frame: str) -> str:
    """``fn (path/to/module.py:123)`` -> ``fn (module.py)``: lines merged, so a function is one row."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})" if path else name


def summarize(raw: Path, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, [(function, self samples)], [(function, total samples)]) from py-spy's raw format."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        # py-spy puts the thread first; drop it.
        frames = [f for f in frames if not f.startswith("thread (")] or frames
        samples += n
        own[frames[-1]] += n
        for name in set(frames):
            total[name] += n
    return samples, own.most_common(top), total.most_common(top)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", default="kafka", choices=("tansu", "kafka"))
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--sample-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    spy = py_spy()
    out = Path(tempfile.mkdtemp(prefix="eddy-profile-"))
    with demo_stack(args.broker, args.rate, drift_at=NO_DRIFT) as (stack, _, state):
        time.sleep(args.warmup)
        stack = read_stack(state) or stack
        pids = {name: int(stack["services"][name]["pid"]) for name in SERVICES}
        before = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
        record = [spy, "record", "--nonblocking", "--format", "raw", "--rate", str(args.sample_rate)]
        record += ["--duration", str(int(args.seconds))]
        procs = {
            name: subprocess.Popen(
                [*record, "--pid", str(pid), "--output", str(out / f"{name}.txt")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        }
        for proc in procs.values():
            proc.wait(args.seconds + 60)
        cores = {name: ((cpu_seconds(pid) or 0.0) - before[name]) / args.seconds for name, pid in pids.items()}
    print(f"machine: {describe()}; broker {args.broker}; demo feed {args.rate:,.0f}/s; {args.seconds:.0f} s sampled")
    for name in SERVICES:
        raw = out / f"{name}.txt"
        if not raw.exists():
            print(f"\n{name}: no profile ({raw})")
            continue
        samples, own, total = summarize(raw, args.top)
        print(f"\n{name}: {cores[name]:.2f} cores over the window (with py-spy attached), {samples} samples")
        print("  self:")
        for fn, n in own:
            print(f"    {n / max(samples, 1):6.1%}  {fn}")
        print("  total (with callees):")
        for fn, n in total:
            print(f"    {n / max(samples, 1):6.1%}  {fn}")
    print(f"\nraw profiles: {out}")


if __name__ == "__main__":
    main()

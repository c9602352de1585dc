"""Detection delay and false alarms of monitoring on seeded synthetic streams (``bench/drift_scenarios.py``).

Run: ``.venv/bin/python -m bench.bench_drift [--seeds 5]``. Each scenario runs 20,000 events with
the change at 10,000 (a gradual one blends in over events 9,500 to 10,500 and is timed from 9,500),
through the same :class:`Monitor` the service runs; a false alarm is any alert before the change
begins (or any alert at all in the stationary run).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.drift_scenarios import EXPECTED_KIND, change_begins, first_detection, run
from bench.machine import describe

CHANGE_AT = 10_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {describe()}; 20,000 events per run, change at {CHANGE_AT}, seeds 1..{args.seeds}")
    print("| scenario | expected alert | detection delay (events), per seed | median | false alarms | other alerts |")
    print("|---|---|---|---:|---:|---|")
    for kind in ("abrupt", "gradual", "covariate", "stationary"):
        delays, false_alarms, others = [], 0, set()
        started = time.perf_counter()
        for seed in range(1, args.seeds + 1):
            fired = run(kind, n=20_000, change_at=CHANGE_AT, seed=seed)
            expected, begins = EXPECTED_KIND.get(kind), change_begins(kind, CHANGE_AT)
            false_alarms += sum(1 for f in fired if f.status == "firing" and (expected is None or f.index < begins))
            if expected is not None:
                delays.append(first_detection(fired, expected, begins))
                others |= {f"{f.kind}:{f.subject}" for f in fired if f.status == "firing" and f.kind != expected}
        shown = ", ".join("missed" if d is None else str(d) for d in delays) or "-"
        found = [d for d in delays if d is not None]
        median = f"{statistics.median(found):.0f}" if found else "-"
        print(
            f"| {kind} | {EXPECTED_KIND.get(kind, 'none')} | {shown} | {median} | {false_alarms} | "
            f"{', '.join(sorted(others)) or '-'} |  ({time.perf_counter() - started:.1f} s)"
        )


if __name__ == "__main__":
    main()

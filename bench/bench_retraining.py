"""Recovery after an abrupt concept change, with the retraining loop closed and with it open.

Run: ``.venv/bin/python -m bench.bench_retraining [--seeds 5] [--curves docs/retraining-curves.csv]``.

The scenario: the demo stream's SEA concept switches abruptly (threshold 8 → 9.5) at event 10,000 of
30,000; the champion is a Hoeffding tree, which keeps learning online but adapts slowly because its
splits were grown for the old concept. Each seed runs twice through the same services' handlers
(``bench/lifecycle.py``): with retraining (monitoring's drift alert → a challenger trained on the
recent labels → shadow trial → promotion), and without it (online learning only).

Recovery: labels after the change until the served answers' accuracy over the last 500 events,
having dropped more than 5 points below its level just before the change (a real drop: the noise of a
500-event window near 97% is under a point), is back within 2 points of it. "Settled" is stricter:
labels until the last time it was more than 2 points below, within the 20,000 events after the change.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import statistics
import tempfile
import time
from pathlib import Path

from eddy.contracts.stream import ModelSpec, StreamContract
from river import dummy

from bench.drift_scenarios import demo_contract, draws
from bench.lifecycle import Lifecycle, Run, run_lifecycle
from bench.machine import describe

CHANGE_AT = 10_000
EVENTS = 30_000
WINDOW = 500
TOLERANCE = 0.02
DROP = 0.05


def tree_contract() -> StreamContract:
    """The demo contract with a Hoeffding tree as its one model."""
    contract = demo_contract()
    tree = ModelSpec("default", (("tree.HoeffdingTreeClassifier", {}),), ("x0", "x1", "x2"))
    return dataclasses.replace(contract, models=(tree,))


def recovery(run: Run) -> tuple[float, int | None, int]:
    """(accuracy just before the change, labels until back within the tolerance (None: never), until settled)."""
    curve = run.windowed(WINDOW)
    before = curve[CHANGE_AT - 1]
    below = [i for i in range(CHANGE_AT, len(curve)) if curve[i] < before - TOLERANCE]
    settled = below[-1] + 1 - CHANGE_AT if below else 0
    dropped = next((i for i in range(CHANGE_AT, len(curve)) if curve[i] < before - DROP), None)
    if dropped is None:
        return before, 0, settled
    back = next((i for i in range(dropped, len(curve)) if curve[i] >= before - TOLERANCE), None)
    return before, None if back is None else back - CHANGE_AT, settled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--curves", type=Path, help="write both windowed-accuracy curves of seed 1 as CSV here")
    args = parser.parse_args()
    contract = tree_contract()
    print(f"machine: {describe()}; SEA 8 -> 9.5 at event {CHANGE_AT:,} of {EVENTS:,}; Hoeffding tree champion")
    print(f"recovery = labels after the change until the {WINDOW}-event served accuracy is within 2 points again")
    print(
        "| seed | accuracy before | recovery, retraining off | recovery, retraining on | ratio "
        "| settled off | settled on | decisions (retraining on; events after the change) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    ratios = []
    for seed in range(1, args.seeds + 1):
        started = time.perf_counter()
        off = run_lifecycle(contract, draws("abrupt", seed, CHANGE_AT), EVENTS, retraining=False)
        on = run_lifecycle(contract, draws("abrupt", seed, CHANGE_AT), EVENTS, retraining=True)
        before, off_labels, off_settled = recovery(off)
        _, on_labels, on_settled = recovery(on)
        horizon = EVENTS - CHANGE_AT
        off_shown = f"{off_labels:,}" if off_labels is not None else f"> {horizon:,}"
        on_shown = f"{on_labels:,}" if on_labels is not None else f"> {horizon:,}"
        ratio = (on_labels if on_labels is not None else horizon) / max(1, off_labels if off_labels else horizon)
        ratios.append(ratio)
        decided = [
            f"{d.event_type} {d.version} @{d.at - CHANGE_AT:+,}"
            for d in on.decisions
            if d.event_type in ("promoted", "rolled_back", "registered", "challenger_rejected", "archived")
            and d.actor != "bench"
            and d.at > 50
        ]
        print(
            f"| {seed} | {before:.3f} | {off_shown} | {on_shown} | {ratio:.2f} | {off_settled:,} | {on_settled:,} "
            f"| {'; '.join(decided) or '-'} |"
            f"  ({time.perf_counter() - started:.0f} s)"
        )
        if seed == 1 and args.curves is not None:
            write_curves(args.curves, off, on)
    print(f"median ratio (on / off): {statistics.median(ratios):.2f}; target <= 0.50")
    print()
    print("A constant predictor (river dummy.PriorClassifier) as a challenger at event 3,000 of a stationary")
    print("stream, and another forced into production at 6,000 (rollback_labels M = 500):")
    print("| seed | decisions about the constant predictors | labels from forced promotion to rollback |")
    print("|---:|---|---:|")
    for seed in range(1, args.seeds + 1):
        decisions, rolled_after = bad_challengers(seed)
        shown = f"{rolled_after:,}" if rolled_after is not None else "never"
        print(f"| {seed} | {'; '.join(decisions)} | {shown} |")


def bad_challengers(seed: int) -> tuple[list[str], int | None]:
    """A constant predictor as a challenger at event 3,000, then forced into production at 6,000.

    Returns the decisions about them and the labels from the forced promotion to its rollback.
    """
    contract = tree_contract()
    source = draws("stationary", seed, CHANGE_AT)
    with tempfile.TemporaryDirectory(prefix="eddy-bad-") as tmp:
        life = Lifecycle(contract, Path(tmp), retraining=True)
        bad: list[str] = []
        forced_at = None
        for start in range(0, 9_000, 50):
            if start == 3_000:
                bad.append(str(life.inject(dummy.PriorClassifier(), "default")))
            if start == 6_000:
                bad.append(str(life.inject(dummy.PriorClassifier(), "default", force=True)))
                forced_at = life.drawn
            life.step(list(itertools.islice(source, 50)))
        life.registry.store.close()
    decisions = [
        f"{d.event_type} {d.version} @{d.at:,}"
        for d in life.run.decisions
        if (d.version in bad and d.event_type in ("registered", "promoted", "archived"))
        or d.event_type == "rolled_back"
    ]
    rolled = next((d.at for d in life.run.decisions if d.event_type == "rolled_back"), None)
    return decisions, None if rolled is None or forced_at is None else rolled - forced_at


def write_curves(path: Path, off: Run, on: Run) -> None:
    """Every 100th event's windowed accuracy, both runs side by side."""
    off_curve, on_curve = off.windowed(WINDOW), on.windowed(WINDOW)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["events_after_change", "accuracy_retraining_off", "accuracy_retraining_on"])
        for i in range(0, min(len(off_curve), len(on_curve)), 100):
            writer.writerow([i - CHANGE_AT, f"{off_curve[i]:.4f}", f"{on_curve[i]:.4f}"])


if __name__ == "__main__":
    main()

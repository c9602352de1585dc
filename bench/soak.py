"""The long soak run: the whole embedded stack at a constant rate, every process's RSS and the join state watched.

Run: ``.venv/bin/python -m bench.soak --minutes 10 --rate 2000`` (about 12 minutes in all). It fails
(exit code 1) on growth that does not level off after the warm-up (the broker's storage apart), on a
join state larger than the label delay and allowed lateness allow, on a process restart, and on a
load that was not delivered or not processed at the rate asked. What is measured and the bounds are
in ``tests/chaos/soak_probe.py``; the short version CI runs is ``tests/chaos/test_soak.py``. Results
go in ``docs/reliability.md``.

``--default-bounds`` keeps the services' id memories at their defaults instead of sizing them to fill
during the warm-up: at high rates the learner's 2 M remembered ids and the gateway's 10-minute
de-duplication window then fill for longer than the run, which the verdict reports as growth.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import describe
from tests.chaos.soak_probe import SoakConfig, SoakResult, run_soak


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration of the load (default 10)")
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second (default 2000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--label-delay", type=float, default=1.0, help="seconds before an event's label is sent")
    parser.add_argument("--sample-interval", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--warmup", type=float, default=0.25, help="share of the run before the verdict looks")
    parser.add_argument(
        "--lateness", type=float, default=None, help="the stream's allowed lateness in s (default: min(60, warm-up/2))"
    )
    parser.add_argument("--default-bounds", action="store_true", help="keep the services' id memories at default")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stack's state and logs here")
    parser.add_argument("--samples", type=Path, default=None, help="write every sample to this JSON file")
    return parser.parse_args(argv)


def config_of(args: argparse.Namespace) -> SoakConfig:
    duration_s = args.minutes * 60
    # Long enough that a pipeline stall of tens of seconds does not turn labels into late ones, short
    # enough that the unlabelled events' predictions expire (and the join state levels off) in the warm-up.
    lateness_s = args.lateness if args.lateness is not None else min(60.0, duration_s * args.warmup / 2)
    return SoakConfig(
        duration_s=duration_s,
        allowed_lateness_s=lateness_s,
        rate=args.rate,
        seed=args.seed,
        label_delay_s=args.label_delay,
        sample_interval_s=args.sample_interval,
        warmup_fraction=args.warmup,
        scaled_bounds=not args.default_bounds,
    )


def write_samples(result: SoakResult, path: Path) -> None:
    """The run's samples and counters, for plotting or a later look."""
    outcome = result.outcome
    doc = {
        "config": asdict(result.config),
        "samples": [asdict(s) for s in outcome.samples],
        "predictions": outcome.predictions,
        "learned": outcome.learned,
        "accepted_events": outcome.tally.accepted_events,
        "accepted_labels": outcome.tally.accepted_labels,
        "passed": result.passed,
    }
    path.write_text(json.dumps(doc, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_of(args)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    print(f"soak run started {started} on {describe()}", flush=True)
    if args.workdir is not None:
        result = run_soak(config, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="eddy-soak-") as workdir:
            result = run_soak(config, Path(workdir))
    print(result.report(), flush=True)
    if args.samples is not None:
        write_samples(result, args.samples)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())

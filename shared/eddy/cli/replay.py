"""``eddy replay``: copy a range of a topic to another topic, byte for byte (the work is in eddy/history/replay.py).

Progress goes to stderr: one line redrawn in place on a terminal, a log line
every few seconds otherwise. The summary goes to stdout. SIGTERM stops the
copy, flushes what was sent, prints the summary and exits 0; Ctrl-C does the
same and exits 130 (a second Ctrl-C aborts at once).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from eddy.cli.common import CliError, UsageError, resolve_settings
from eddy.history.bounds import BoundError, parse_bound
from eddy.history.progress import ProgressLine
from eddy.history.replay import ReplayError, ReplayResult, format_summary, replay

EXIT_INTERRUPTED = 130

BOUNDS_HELP = """\
bounds (--from is inclusive, --until exclusive):
  N              an offset, in every partition, when N < 10**11
  N              a time in epoch milliseconds when N >= 10**11 (today: 13 digits), e.g. 1795168800000
  offset:N       always an offset;  ms:N  always epoch milliseconds
  ISO 8601       a time, e.g. 2026-11-20T10:00:00Z, 2026-11-20T11:00:00+01:00 or 2026-11-20;
                 a time without a zone is UTC

Time bounds are exact: each partition's window is found by a binary search over
the records' own timestamps, and every copied record is checked against the
range. The search assumes timestamps do not go backwards within a partition;
the summary says when they did, and --scan then gives the exact answer (it
reads every partition whole). The end is fixed when the replay starts.

Records keep their key, value bytes, headers and timestamp. The target topic is
created when missing, with the source's partition count; when it has at least
as many partitions as the source, each record keeps its partition number,
otherwise it is partitioned by key.

Backtest through the live pipeline: write a sandbox contract (stream: demo-replay-1,
sandbox_of: demo), restart the services, then
  eddy replay demo.events --to-topic demo-replay-1.events --from 2026-11-20T10:00:00Z --until 2026-11-20T12:00:00Z
  eddy replay demo.feedback --to-topic demo-replay-1.feedback --from 2026-11-20T10:00:00Z
"""


def cmd_replay(args: argparse.Namespace) -> int:
    """Run one replay; 0 when done or stopped by SIGTERM, 130 on Ctrl-C, 1 when the broker refused records."""
    try:
        start = parse_bound(args.start, "--from") if args.start is not None else None
        until = parse_bound(args.until, "--until") if args.until is not None else None
    except BoundError as exc:
        raise UsageError(str(exc)) from exc
    settings = resolve_settings()
    progress = ReplayProgress(sys.stderr)
    with stop_on_signals() as (stop, caught):
        try:
            result = replay(
                settings,
                args.topic,
                args.to_topic,
                start,
                until,
                partition=args.partition,
                scan=args.scan,
                rate=args.rate,
                stop=stop,
                on_progress=progress.update,
            )
        except ReplayError as exc:
            raise CliError(str(exc)) from exc
        finally:
            progress.close()
    print(format_summary(result), flush=True)
    if result.failed:
        return 1
    return EXIT_INTERRUPTED if signal.SIGINT in caught else 0


@contextmanager
def stop_on_signals() -> Iterator[tuple[threading.Event, list[int]]]:
    """An event set by SIGTERM or SIGINT, and the signals caught; the previous handlers are restored after.

    After the first Ctrl-C, a second one raises KeyboardInterrupt as usual, for when the flush takes too long.
    """
    stop = threading.Event()
    caught: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        caught.append(signum)
        stop.set()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop, caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class ReplayProgress(ProgressLine):
    """Replay progress: share of the planned records done, copied, skipped, rate, time."""

    def __init__(self, stream: TextIO, log_every_s: float = 5.0) -> None:
        super().__init__(stream, "eddy replay", log_every_s)

    def update(self, result: ReplayResult) -> None:
        self.show(*self.describe(result))

    @staticmethod
    def describe(result: ReplayResult) -> tuple[float, str]:
        """The share done and the line's text.

        >>> r = ReplayResult("a", "b", False, True, False, {0: (0, 100)}, {0: 40}, 10, elapsed_s=2.0)
        >>> ReplayProgress.describe(r)
        (0.5, '40 copied  10 skipped  20 records/s  2 s')
        """
        done = result.total + result.skipped
        share = min(1.0, done / result.planned) if result.planned else 1.0
        counts = f"{result.total:,} copied  {result.skipped:,} skipped"
        return share, f"{counts}  {result.rate:,.0f} records/s  {result.elapsed_s:.0f} s"


def add_parsers(sub: Any) -> None:
    """Add ``replay`` to eddy's subcommands."""
    p = sub.add_parser(
        "replay",
        help="copy a range of a topic to another topic (keys, bytes, headers and timestamps kept)",
        description="Copy the records of TOPIC between --from and --until to --to-topic, byte for byte.",
        epilog=BOUNDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("topic", help="the source topic, e.g. demo.events")
    p.add_argument("--to-topic", required=True, metavar="T2", help="the target topic (created when missing)")
    p.add_argument("--from", dest="start", metavar="X", help="first offset or time, inclusive (default: the start)")
    p.add_argument("--until", metavar="Y", help="offset or time to stop at, exclusive (default: the end at start)")
    p.add_argument("--rate", type=float, default=0.0, metavar="N", help="at most N records/s (default 0: no limit)")
    p.add_argument("--partition", type=int, metavar="P", help="copy only source partition P")
    p.add_argument(
        "--scan", action="store_true", help="read partitions whole instead of searching: exact for any timestamp order"
    )
    p.set_defaults(func=cmd_replay)

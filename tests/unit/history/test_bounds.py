"""History ranges without a broker: reading bounds (``eddy replay``, ``dataset``, ``backtest``), and the
window search over a fake partition."""

from __future__ import annotations

import argparse
import random

import pytest
from eddy.cli import replay as cli_replay
from eddy.cli.common import CliError
from eddy.history.bounds import Bound, BoundError, check_range, parse_bound
from eddy.history.reader import first_offset_at

T0 = 1_795_168_800_000  # 2026-11-20T10:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", Bound("offset", 0)),
        ("1234", Bound("offset", 1234)),
        (str(10**11 - 1), Bound("offset", 10**11 - 1)),
        (str(10**11), Bound("time", 10**11)),
        (str(T0), Bound("time", T0)),
        (" 42 ", Bound("offset", 42)),
        ("offset:1795168800000", Bound("offset", T0)),
        ("ms:12", Bound("time", 12)),
        ("2026-11-20T10:00:00Z", Bound("time", T0)),
        ("2026-11-20T10:00:00", Bound("time", T0)),
        ("2026-11-20T11:00:00+01:00", Bound("time", T0)),
        ("2026-11-20T10:00:00.250Z", Bound("time", T0 + 250)),
        # Below a millisecond rounds up: a whole-millisecond timestamp is at or after the time exactly then.
        ("2026-11-20T10:00:00.000001Z", Bound("time", T0 + 1)),
        ("2026-11-20T09:59:59.999999Z", Bound("time", T0)),
        ("2026-11-20", Bound("time", T0 - 10 * 3_600_000)),
        ("1969-12-31T23:59:59.999Z", Bound("time", -1)),
    ],
)
def test_parse_bound(text: str, expected: Bound) -> None:
    assert parse_bound(text) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "-5", "12.5", "offset:", "offset:-1", "ms:abc", "2026-13-01"])
def test_unreadable_bounds_are_one_clear_error(text: str) -> None:
    with pytest.raises(BoundError) as err:
        parse_bound(text, "--from")
    message = str(err.value)
    assert message.startswith(f"--from {text!r}") and "\n" not in message


def test_empty_ranges_are_refused_and_mixed_kinds_are_not_compared() -> None:
    check_range(Bound("offset", 1), Bound("offset", 2))
    check_range(Bound("time", T0), None)
    check_range(Bound("offset", 10**9), Bound("time", T0 - 1))
    for until in (Bound("offset", 4), Bound("offset", 5)):
        with pytest.raises(BoundError, match="range is empty"):
            check_range(Bound("offset", 5), until)
    with pytest.raises(BoundError, match=r"is not after --from 2026-11-20T10:00:00\.000Z"):
        check_range(Bound("time", T0), Bound("time", T0 - 1))


# -- the window search ------------------------------------------------------------------------------


class FakePartition:
    """A partition as the search sees it: ``record_at(offset)`` gives the first record there or after."""

    def __init__(self, records: dict[int, int]) -> None:
        self.offsets = sorted(records)
        self.records = records
        self.reads = 0

    def record_at(self, offset: int) -> tuple[int, int] | None:
        self.reads += 1
        found = next((o for o in self.offsets if o >= offset), None)
        return None if found is None else (found, self.records[found])

    def expected(self, low: int, high: int, time_ms: int) -> int:
        """The answer by a linear scan: the first offset whose next record is at or after ``time_ms``."""
        for offset in range(low, high):
            found = self.record_at(offset)
            if found is None or found[0] >= high or found[1] >= time_ms:
                return offset
        return high


def test_search_on_a_dense_partition() -> None:
    part = FakePartition({o: 1000 + 10 * o for o in range(100)})
    assert first_offset_at(part.record_at, 0, 100, 0) == 0
    assert first_offset_at(part.record_at, 0, 100, 1000) == 0
    assert first_offset_at(part.record_at, 0, 100, 1001) == 1
    assert first_offset_at(part.record_at, 0, 100, 1500) == 50
    assert first_offset_at(part.record_at, 0, 100, 1990) == 99
    assert first_offset_at(part.record_at, 0, 100, 1991) == 100
    assert first_offset_at(part.record_at, 20, 60, 0) == 20
    assert first_offset_at(part.record_at, 20, 60, 10**15) == 60
    assert first_offset_at(part.record_at, 5, 5, 1500) == 5


def test_search_reads_a_logarithmic_number_of_records() -> None:
    part = FakePartition({o: o for o in range(1_000_000)})
    assert first_offset_at(part.record_at, 0, 1_000_000, 765_432) == 765_432
    assert part.reads <= 21


def test_search_with_equal_timestamps_finds_the_first_of_them() -> None:
    part = FakePartition({o: 7 for o in range(50)} | {o: 9 for o in range(50, 80)})
    assert first_offset_at(part.record_at, 0, 80, 7) == 0
    assert first_offset_at(part.record_at, 0, 80, 8) == 50
    assert first_offset_at(part.record_at, 0, 80, 9) == 50


def test_search_over_gaps_lands_where_reading_starts_at_the_right_record() -> None:
    # Offsets without a record (compacted away, transaction markers), including at both ends.
    part = FakePartition({3: 100, 4: 100, 9: 200, 10: 250, 20: 300, 21: 300})
    for time_ms, first_record in [(50, 3), (100, 3), (150, 9), (200, 9), (201, 10), (260, 20), (300, 20)]:
        offset = first_offset_at(part.record_at, 0, 25, time_ms)
        assert part.record_at(offset) == (first_record, part.records[first_record]), time_ms
    assert part.record_at(first_offset_at(part.record_at, 0, 25, 301)) is None


@pytest.mark.parametrize("seed", range(30))
def test_search_agrees_with_a_linear_scan(seed: int) -> None:
    rng = random.Random(seed)
    low = rng.randrange(0, 20)
    offsets = sorted(rng.sample(range(low, low + 200), rng.randrange(0, 120)))
    times, t = {}, rng.randrange(0, 1000)
    for offset in offsets:
        t += rng.choice([0, 0, 1, 5, 50])
        times[offset] = t
    part = FakePartition(times)
    high = low + 200 - rng.randrange(0, 30)
    for time_ms in [-1, t + 1, *rng.sample(range(0, t + 2), min(10, t + 2))]:
        assert first_offset_at(part.record_at, low, high, time_ms) == part.expected(low, high, time_ms)


def test_cli_refuses_bad_bounds_with_eddy_s_one_line_error() -> None:
    parser = argparse.ArgumentParser(prog="eddy")
    cli_replay.add_parsers(parser.add_subparsers())
    for argv, message in [
        (["replay", "a.events", "--to-topic", "b.events", "--from", "soon"], "--from 'soon' is not an offset"),
        (["replay", "a.events", "--to-topic", "b.events", "--until", "ms:x"], "--until 'ms:x': ms: must be"),
    ]:
        args = parser.parse_args(argv)
        with pytest.raises(CliError, match=message):
            args.func(args)

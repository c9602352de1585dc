"""The history reader's pure parts: a partition's span from its watermarks, bounds and a start position."""

from __future__ import annotations

import pytest
from eddy.history.bounds import parse_bound
from eddy.history.dataset import bound_doc
from eddy.history.reader import Span, clamp_span


@pytest.mark.parametrize(
    ("low", "high", "start", "until", "expected"),
    [
        (0, 100, None, None, (0, 100)),
        (0, 100, 10, 20, (10, 20)),
        # A start below the first record (retention deleted it): the first record there is.
        (40, 100, 10, None, (40, 100)),
        # A start or an end past the end fixed at start: nothing, or up to the fixed end only.
        (0, 100, 150, None, (100, 100)),
        (0, 100, None, 150, (0, 100)),
        # An end before the start: empty, never negative.
        (0, 100, 30, 20, (30, 30)),
        (5, 5, None, None, (5, 5)),
    ],
)
def test_a_span_is_the_bounds_within_the_partition_as_it_was_at_start(
    low: int, high: int, start: int | None, until: int | None, expected: tuple[int, int]
) -> None:
    span = clamp_span("t", 0, low, high, start, until)
    assert (span.first, span.end) == expected
    assert span.size == expected[1] - expected[0] >= 0
    assert (span.low, span.high) == (low, high)


def test_span_size_is_never_negative() -> None:
    assert Span("t", 0, 0, 10, 8, 3).size == 0


def test_the_manifest_keeps_its_own_name_for_a_time_bound() -> None:
    assert bound_doc(parse_bound("12")) == {"given": "12", "kind": "offset", "value": 12}
    assert bound_doc(parse_bound("2023-11-14T22:13:20Z"))["kind"] == "timestamp"

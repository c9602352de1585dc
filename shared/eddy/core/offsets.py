"""Offset spans: the first and last offset seen per partition, the evidence profiles and alerts carry."""

from __future__ import annotations


def widen(spans: dict[int, list[int]], partition: int, offset: int) -> None:
    """Widen ``spans[partition]`` (``[first, last]``) to include ``offset``.

    >>> spans: dict[int, list[int]] = {}
    >>> for partition, offset in [(0, 5), (0, 3), (1, 7), (0, 9)]:
    ...     widen(spans, partition, offset)
    >>> spans
    {0: [3, 9], 1: [7, 7]}
    """
    span = spans.get(partition)
    if span is None:
        spans[partition] = [offset, offset]
    elif offset < span[0]:
        span[0] = offset
    elif offset > span[1]:
        span[1] = offset

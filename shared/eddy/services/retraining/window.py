"""The most recent labeled examples of one model version, and where they are in S.labeled.

A retrained challenger learns from the champion's latest labeled examples:
exactly the features the champion was given, with their labels. Each example
keeps its partition and offset, so a training set can be named as offset
ranges of S.labeled and replayed later (lineage).

Examples
--------
>>> window = Window(3)
>>> for i in range(5):
...     _ = window.add(Example.of({"event_id": f"e{i}", "label": True}, "demo.labeled", 0, 10 + 2 * i))
>>> [e.event_id for e in window.examples()]
['e2', 'e3', 'e4']
>>> window.add(Example.of({"event_id": "e4", "label": False}, "demo.labeled", 0, 30))
False
>>> window.offset_ranges()
[{'topic': 'demo.labeled', 'partition': 0, 'first_offset': 14, 'last_offset': 18}]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eddy.ml.models import Features, Scalar


@dataclass(frozen=True, slots=True)
class Example:
    """One labeled example of one model version (an S.labeled record, trimmed to what retraining uses)."""

    event_id: str
    features: Features
    label: Scalar
    prediction: Scalar
    probabilities: Mapping[str, float] | None
    served: bool
    predicted_at_ms: int
    topic: str
    partition: int
    offset: int
    # The offset of this version's previous record in the same partition: when it is the previous example
    # of the window, nothing of this version lies between the two and their ranges join.
    after: int = field(default=-1, compare=False)

    @classmethod
    def of(cls, value: Mapping[str, Any], topic: str, partition: int, offset: int) -> Example:
        """From a decoded ``LabeledExample`` record.

        Raises
        ------
        KeyError, TypeError
            When the record lacks an event id or its features are not a mapping.
        """
        features = value.get("features") or {}
        if not isinstance(features, Mapping):
            raise TypeError(f"features must be a mapping, not {type(features).__name__}")
        probabilities = value.get("probabilities")
        return cls(
            event_id=str(value["event_id"]),
            features=dict(features),
            label=value.get("label"),
            prediction=value.get("prediction"),
            probabilities=dict(probabilities) if isinstance(probabilities, Mapping) else None,
            # Null is from before the field existed, when only the champion was labeled: it was served.
            served=value.get("served") is not False,
            predicted_at_ms=int(value.get("predicted_at_ms") or 0),
            topic=topic,
            partition=partition,
            offset=offset,
        )


class Window:
    """A bounded window of a version's latest examples, de-duplicated by event id.

    Event ids are remembered a little longer than the window holds them, so a
    replayed record arriving just after its original was evicted still counts once.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._examples: deque[Example] = deque()
        self._ids: set[str] = set()
        self._recent: deque[str] = deque()
        self._last_offset: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._examples)

    def add(self, example: Example) -> bool:
        """Keep ``example``; False (and nothing kept) when its event id was seen already."""
        previous = self._last_offset.get(example.partition, -1)
        self._last_offset[example.partition] = max(previous, example.offset)
        if example.event_id in self._ids:
            return False
        linked = Example(**{**_fields(example), "after": previous})
        self._examples.append(linked)
        self._ids.add(example.event_id)
        self._recent.append(example.event_id)
        if len(self._examples) > self.size:
            self._examples.popleft()
        # Bounded memory of ids: twice the window.
        while len(self._recent) > 2 * self.size:
            self._ids.discard(self._recent.popleft())
        return True

    def examples(self) -> list[Example]:
        """Oldest first."""
        return list(self._examples)

    def offset_ranges(self, examples: Sequence[Example] | None = None) -> list[dict[str, Any]]:
        """``examples`` (default: the whole window) as ``OffsetRange`` records, merged per partition."""
        return offset_ranges(self.examples() if examples is None else examples)


def offset_ranges(examples: Sequence[Example]) -> list[dict[str, Any]]:
    """Inclusive ``[first, last]`` offset ranges per topic and partition.

    Two examples of a partition join one range when nothing of their version lies
    between them (the later one's ``after`` is the earlier one's offset); other
    versions' records in between are not part of the training set, which is
    every record of the range written by that version.

    >>> a = Example.of({"event_id": "a"}, "s.labeled", 0, 4)
    >>> b = Example(**{**_fields(Example.of({"event_id": "b"}, "s.labeled", 0, 6)), "after": 4})
    >>> c = Example(**{**_fields(Example.of({"event_id": "c"}, "s.labeled", 0, 9)), "after": 8})
    >>> [(r["first_offset"], r["last_offset"]) for r in offset_ranges([a, b, c])]
    [(4, 6), (9, 9)]
    """
    by_partition: dict[tuple[str, int], list[Example]] = {}
    for example in examples:
        by_partition.setdefault((example.topic, example.partition), []).append(example)
    ranges: list[dict[str, Any]] = []
    for (topic, partition), group in sorted(by_partition.items()):
        group.sort(key=lambda e: e.offset)
        first = last = group[0].offset
        for example in group[1:]:
            if example.after != last and example.offset != last + 1:
                ranges.append(_range(topic, partition, first, last))
                first = example.offset
            last = example.offset
        ranges.append(_range(topic, partition, first, last))
    return ranges


def _range(topic: str, partition: int, first: int, last: int) -> dict[str, Any]:
    return {"topic": topic, "partition": partition, "first_offset": first, "last_offset": last}


def _fields(example: Example) -> dict[str, Any]:
    return {name: getattr(example, name) for name in Example.__dataclass_fields__}

"""What a backtest replays: events (one at a time, or a whole ordered table of them as columns) and labels.

An :class:`EventTable` is how the engine sees the events. Built from a list of
:class:`Event` it holds their records as they are; built by the history reader
it holds columns decoded straight from the topic (``eddy.avro.columns``) and the
raw values, so the records (dicts) are only decoded if a model needs them: the
linear kernel takes the feature matrix, river's own path takes records.

>>> table = EventTable.of([Event("a", 5, {"x": 1.0}), Event("b", 7, {"x": 2})])
>>> len(table), table.ids, table.times.tolist(), table.matrix(["x"]).tolist()
(2, ['a', 'b'], [5, 7], [[1.0], [2.0]])
>>> table[1], table[1:].ids
(Event(event_id='b', time_ms=7, record={'x': 2}), ['b'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple, overload

import numpy as np


# Named tuples rather than dataclasses: a backtest may make one per record of the history, and a
# tuple is built several times faster than a frozen dataclass.
class Event(NamedTuple):
    """One event as it was validated: its id, event time (ms) and record (the features among its fields)."""

    event_id: str
    time_ms: int
    record: Mapping[str, Any]


class Label(NamedTuple):
    """An event's label and when it arrived (ms, the clock of event times)."""

    value: Any
    arrived_ms: int


_ID, _TIME, _RECORD = itemgetter(0), itemgetter(1), itemgetter(2)


class EventTable(Sequence[Event]):
    """Events in the order a backtest replays them, as columns.

    Parameters
    ----------
    ids, times
        Each event's id and event time (ms, int64).
    records
        Each event's record, or None to decode them from ``raws`` with ``decode`` when first asked.
    numbers, nulls
        Numeric fields as float64 columns, each with a per-row flag for a null, missing or non-number
        value; a feature without a column is read from the records.
    """

    def __init__(
        self,
        ids: list[str],
        times: np.ndarray,
        records: Sequence[Mapping[str, Any]] | None = None,
        *,
        numbers: Mapping[str, np.ndarray] | None = None,
        nulls: Mapping[str, np.ndarray] | None = None,
        raws: Sequence[bytes] = (),
        decode: Callable[[Sequence[bytes]], Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        if records is None and decode is None:
            raise ValueError("an EventTable needs its records or the raw values and a decoder")
        self.ids = ids
        self.times = times
        self._records = records
        self._numbers = numbers or {}
        self._nulls = nulls or {}
        self._raws = raws
        self._decode = decode

    @classmethod
    def of(cls, events: Sequence[Event]) -> EventTable:
        """The table of a list of events (already in replay order)."""
        if isinstance(events, EventTable):
            return events
        times = np.fromiter(map(_TIME, events), np.int64, len(events))
        return cls(list(map(_ID, events)), times, list(map(_RECORD, events)))

    def records(self) -> Sequence[Mapping[str, Any]]:
        if self._records is None:
            assert self._decode is not None
            self._records = self._decode(self._raws)
        return self._records

    def matrix(self, features: Sequence[str]) -> np.ndarray | None:
        """The features as a float matrix; None if any is missing or not a finite number (river's path takes those)."""
        if all(f in self._numbers for f in features):
            if any(self._nulls[f].any() for f in features):
                return None
            columns = np.empty((len(self), len(features)), dtype=np.float64)
            for k, f in enumerate(features):
                columns[:, k] = self._numbers[f]
            return columns if np.isfinite(columns).all() else None
        matrix = _matrix_of(self.records(), features)
        return matrix if matrix is not None and np.isfinite(matrix).all() else None

    def take(self, positions: np.ndarray) -> EventTable:
        """The events at ``positions``, in that order."""
        picked = positions.tolist()
        return EventTable(
            [self.ids[i] for i in picked],
            self.times[positions],
            None if self._records is None else [self._records[i] for i in picked],
            numbers={f: column[positions] for f, column in self._numbers.items()},
            nulls={f: column[positions] for f, column in self._nulls.items()},
            raws=[self._raws[i] for i in picked] if self._records is None else (),
            decode=self._decode,
        )

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> EventTable: ...

    def __getitem__(self, index: int | slice) -> Event | EventTable:
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return Event(self.ids[index], int(self.times[index]), self.records()[index])

    def __iter__(self) -> Iterator[Event]:
        return map(Event, self.ids, self.times.tolist(), self.records())


def _matrix_of(records: Sequence[Mapping[str, Any]], features: Sequence[str]) -> np.ndarray | None:
    n, width = len(records), len(features)
    values = map(itemgetter(*features), records)
    try:
        flat = np.fromiter(values if width == 1 else chain.from_iterable(values), np.float64, n * width)
    except (KeyError, TypeError, ValueError):
        return None
    return flat.reshape(n, width)

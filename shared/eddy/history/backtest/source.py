"""A stream's history for a backtest: its events and labels, read from Kafka up to where they end now.

Events come from ``S.validated`` (what the live pipeline predicted) or
``S.events``; labels from ``S.feedback``. Both are read from the beginning to
the end each partition had when the read started (``eddy.history.reader``), so
a stream still being written to does not keep a backtest reading.
The first record of an event id wins, as it does in inference; the first label
of an event (earliest ``label_time_ms``, then topic order) wins, as in learning.
Events are put in event-time order, ties by event id, so the order never
depends on how partitions interleaved.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eddy.avro.columns import decode_columns, field_types, numeric_fields
from eddy.avro.serde import SerdeError, SerdeRegistry, TopicSerde
from eddy.contracts.stream import StreamContract
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.backtest.events import EventTable, Label
from eddy.history.bounds import Bound
from eddy.history.reader import read_to_end


@dataclass
class History:
    """What a backtest replays, and where in the topics it came from (for the report and the experiment)."""

    events: EventTable
    labels: dict[str, Label]
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)  # "topic:partition" -> first, last
    schema_ids: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def in_range(offset: int, time_ms: int, start: Bound | None, until: Bound | None) -> bool:
    """Whether a record is inside ``[start, until)``: offsets per partition, times on the event time.

    >>> in_range(5, 1000, Bound("offset", 5), Bound("time", 1001)), in_range(4, 1000, Bound("offset", 5), None)
    (True, False)
    """
    return bool(in_range_of(np.array([offset]), np.array([time_ms]), start, until)[0])


def in_range_of(offsets: np.ndarray, times: np.ndarray, start: Bound | None, until: Bound | None) -> np.ndarray:
    """:func:`in_range` for arrays of offsets and event times."""
    inside = np.ones(len(offsets), dtype=bool)
    if start is not None:
        inside &= (offsets if start.kind == "offset" else times) >= start.value
    if until is not None:
        inside &= (offsets if until.kind == "offset" else times) < until.value
    return inside


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector while a history is built.

    Reading a history allocates objects per record and frees none, so each collection the
    allocations trigger finds nothing, yet walks every object still young: a third of the read's
    time, measured. Records hold no reference cycles, and reference counting still frees the rest.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _Raw:
    """One topic's values as read, with their partitions and offsets."""

    values: list[bytes] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def load_history(
    settings: Settings,
    contract: StreamContract,
    serdes: SerdeRegistry,
    source: str = "validated",
    start: Bound | None = None,
    until: Bound | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> History:
    """Read the events of ``S.<source>`` in ``[start, until)`` and every label of ``S.feedback``.

    ``on_progress(read, planned)`` follows the read (records of both topics, see ``read_to_end``).
    """
    topics = StreamTopics(contract.name)
    event_topic = topics.validated if source == "validated" else topics.events
    event_serde, label_serde = serdes.for_topic(event_topic), serdes.for_topic(topics.feedback)
    if not isinstance(event_serde, TopicSerde) or not isinstance(label_serde, TopicSerde):
        raise TypeError(f"{event_topic} and {topics.feedback} carry Avro, not JSON")
    events, labels = _Raw(), _Raw()
    skipped = {"undecodable": 0, "out_of_range": 0, "duplicate_event": 0, "duplicate_label": 0}
    # Whole batches at a time, no Python call per record where it can be helped: this runs for every
    # record of the history. Values are decoded into columns once the read is done.
    with gc_paused():
        for batch in read_to_end(settings, [event_topic, topics.feedback], purpose="backtest", on_progress=on_progress):
            ours = [m for m in batch if m.topic() == event_topic]
            events.values += [m.value() or b"" for m in ours]
            events.partitions += [m.partition() or 0 for m in ours]
            events.offsets += [m.offset() or 0 for m in ours]
            if len(ours) < len(batch):
                labels.values += [m.value() or b"" for m in batch if m.topic() != event_topic]
        table, spans, event_schemas = _events(contract, event_serde, events, start, until, skipped)
        found, label_schemas = _labels(label_serde, labels.values, skipped)
    offsets = {f"{event_topic}:{p}": span for p, span in spans.items()}
    return History(table, found, offsets, sorted(event_schemas | label_schemas), skipped)


def _events(
    contract: StreamContract,
    serde: TopicSerde,
    raw: _Raw,
    start: Bound | None,
    until: Bound | None,
    skipped: dict[str, int],
) -> tuple[EventTable, dict[int, dict[str, int]], set[int]]:
    """The events kept (the first of each id inside the range) in event-time order, their offset spans per
    partition, and the schema ids of every value."""
    id_field, time_field = contract.id_field, contract.time_field
    types = field_types(serde)
    timed = bool(types.get(time_field)) and types[time_field] <= {"int", "long"}
    doubles = [f for f in numeric_fields(serde) if f != time_field]
    objects = [id_field] if timed else [id_field, time_field]
    cols = decode_columns(serde, raw.values, doubles, [time_field] if timed else [], objects)
    if timed:
        decoded, times = cols.decoded & ~cols.nulls[time_field], cols.numbers[time_field]
    else:
        whole = [_whole(t) for t in cols.objects[time_field]]
        decoded = cols.decoded & np.array([t is not None for t in whole], dtype=bool)
        times = np.array([t or 0 for t in whole], dtype=np.int64)
    offsets = np.asarray(raw.offsets, dtype=np.int64)
    inside = decoded & in_range_of(offsets, times, start, until)
    skipped["undecodable"] += int((~decoded).sum())
    skipped["out_of_range"] += int((decoded & ~inside).sum())
    ids = cols.objects[id_field]
    # The first record of an id wins, in topic order, as in inference.
    first: dict[str, int] = {}
    for i in np.flatnonzero(inside).tolist():
        first.setdefault(_text(ids[i]), i)
    kept_ids, taken = list(first), np.fromiter(first.values(), np.int64, len(first))
    skipped["duplicate_event"] += int(inside.sum()) - len(first)
    order = _event_order(times[taken], kept_ids)
    rows = taken[order]
    table = EventTable(
        [kept_ids[i] for i in order.tolist()],
        times[rows],
        numbers={f: cols.numbers[f][rows] for f in doubles},
        nulls={f: cols.nulls[f][rows] for f in doubles},
        raws=[raw.values[i] for i in rows.tolist()],
        decode=_decoder(serde),
    )
    return table, _spans(np.asarray(raw.partitions, dtype=np.int64)[taken], offsets[taken]), cols.schema_ids


def _labels(serde: TopicSerde, values: list[bytes], skipped: dict[str, int]) -> tuple[dict[str, Label], set[int]]:
    """The first label of each event (earliest ``label_time_ms``, then topic order), and the schema ids."""
    cols = decode_columns(serde, values, ints=["label_time_ms"], objects=["event_id", "label"])
    decoded = cols.decoded & ~cols.nulls["label_time_ms"]
    skipped["undecodable"] += int((~decoded).sum())
    labels: dict[str, Label] = {}
    seen_label = labels.get
    ids, found, arrivals = cols.objects["event_id"], cols.objects["label"], cols.numbers["label_time_ms"].tolist()
    for i in np.flatnonzero(decoded).tolist():
        event_id, arrived = _text(ids[i]), arrivals[i]
        seen = seen_label(event_id)
        if seen is not None:
            skipped["duplicate_label"] += 1
            if seen.arrived_ms <= arrived:
                continue
        labels[event_id] = Label(found[i], arrived)
    return labels, cols.schema_ids


def _event_order(times: np.ndarray, ids: list[str]) -> np.ndarray:
    """Positions in event-time order, ties by event id (Python's string order): never how partitions interleaved."""
    by_time = np.argsort(times, kind="stable")
    ordered = times[by_time]
    if not (ordered[1:] == ordered[:-1]).any():
        return by_time
    # Ties: rank the ids (an object array sorts with Python's own comparison), then sort by (time, rank).
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(len(ids))
    return np.lexsort((rank, times))


def _spans(partitions: np.ndarray, offsets: np.ndarray) -> dict[int, dict[str, int]]:
    """The first and last offset kept per partition."""
    return {
        int(p): {"first": int(offsets[partitions == p].min()), "last": int(offsets[partitions == p].max())}
        for p in np.unique(partitions).tolist()
    }


def _decoder(serde: TopicSerde) -> Callable[[Sequence[bytes]], list[dict[str, Any]]]:
    """Decodes the records of values that already decoded once (into columns)."""

    def decode(values: Sequence[bytes]) -> list[dict[str, Any]]:
        records = [r for r in serde.decode_many(values) if isinstance(r, dict)]
        if len(records) != len(values):
            raise SerdeError(f"{len(values) - len(records)} values of {serde.topic} no longer decode")
        return records

    return decode


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _whole(value: Any) -> int | None:
    """An event time of another type (a double, say) as ``int()`` takes it, as the services do; None for
    one that is no number an int64 holds (its record is then undecodable here).

    >>> _whole(5.7), _whole(None), _whole(float("nan")), _whole(10**30), _whole(True)
    (5, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    whole = int(value)
    return whole if -(2**63) <= whole < 2**63 else None

"""A stream's history for a backtest: its events and labels, read from Kafka up to where they end now.

Events come from ``S.validated`` (what the live pipeline predicted) or
``S.events``; labels from ``S.feedback``. Both are read from the beginning to
the end each partition had when the read reached it (partition EOF, so no
"latest" offset is asked of the broker: the embedded one answers it wrong).
The first record of an event id wins, as it does in inference; the first label
of an event (earliest ``label_time_ms``, then topic order) wins, as in learning.
Events are put in event-time order, ties by event id, so the order never
depends on how partitions interleaved.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter

from shared.backtest.engine import Event, Label
from shared.contracts import StreamContract
from shared.kafka import read_to_end
from shared.replay import Bound
from shared.serde import SerdeRegistry
from shared.settings import Settings
from shared.topics import StreamTopics


@dataclass
class History:
    """What a backtest replays, and where in the topics it came from (for the report and the experiment)."""

    events: list[Event]
    labels: dict[str, Label]
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)  # "topic:partition" -> first, last
    schema_ids: list[int] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)


def in_range(offset: int, time_ms: int, start: Bound | None, until: Bound | None) -> bool:
    """Whether a record is inside ``[start, until)``: offsets per partition, times on the event time.

    >>> in_range(5, 1000, Bound("offset", 5), Bound("time", 1001)), in_range(4, 1000, Bound("offset", 5), None)
    (True, False)
    """
    if start is not None and (offset if start.kind == "offset" else time_ms) < start.value:
        return False
    return until is None or (offset if until.kind == "offset" else time_ms) < until.value


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector while a history is built.

    Reading a history allocates two objects per record and frees none, so each collection the
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


def load_history(
    settings: Settings,
    contract: StreamContract,
    serdes: SerdeRegistry,
    source: str = "validated",
    start: Bound | None = None,
    until: Bound | None = None,
) -> History:
    """Read the events of ``S.<source>`` in ``[start, until)`` and every label of ``S.feedback``."""
    topics = StreamTopics(contract.name)
    event_topic = topics.validated if source == "validated" else topics.events
    events: dict[str, Event] = {}
    labels: dict[str, Label] = {}
    taken: list[tuple[int, int]] = []  # (partition, offset) of every event kept, for the spans
    skipped = {"undecodable": 0, "out_of_range": 0, "duplicate_event": 0, "duplicate_label": 0}
    id_field, time_field = contract.id_field, contract.time_field
    bounded = start is not None or until is not None
    headers: set[bytes] = set()
    event_serde, label_serde = serdes.for_topic(event_topic), serdes.for_topic(topics.feedback)
    # Inline loops, no call per record: this runs for every record of the history.
    with gc_paused():
        for batch in read_to_end(settings, [event_topic, topics.feedback], purpose="backtest"):
            from_events = [m for m in batch if m.topic() == event_topic]
            raws = [m.value() or b"" for m in from_events]
            headers.update(raw[1:5] for raw in raws)
            for msg, value in zip(from_events, event_serde.decode_many(raws), strict=True):
                if not isinstance(value, dict):
                    skipped["undecodable"] += 1
                    continue
                event_id, at, offset = str(value[id_field]), int(value[time_field]), msg.offset() or 0
                if bounded and not in_range(offset, at, start, until):
                    skipped["out_of_range"] += 1
                elif event_id in events:
                    skipped["duplicate_event"] += 1
                else:
                    events[event_id] = Event(event_id, at, value)
                    taken.append((msg.partition() or 0, offset))
            raws = [m.value() or b"" for m in batch if m.topic() != event_topic]
            headers.update(raw[1:5] for raw in raws)
            for value in label_serde.decode_many(raws):
                if not isinstance(value, dict):
                    skipped["undecodable"] += 1
                    continue
                event_id, arrived = str(value["event_id"]), int(value["label_time_ms"])
                seen = labels.get(event_id)
                if seen is not None:
                    skipped["duplicate_label"] += 1
                    if seen.arrived_ms <= arrived:
                        continue
                labels[event_id] = Label(value["label"], arrived)
    schema_ids = {int.from_bytes(h, "big") for h in headers if len(h) == 4}
    ordered = sorted(events.values(), key=_EVENT_ORDER)
    return History(ordered, labels, _spans(event_topic, taken), sorted(schema_ids), skipped)


# Event time, then event id: never how partitions happened to interleave.
_EVENT_ORDER = itemgetter(1, 0)


def _spans(topic: str, taken: list[tuple[int, int]]) -> dict[str, dict[str, int]]:
    """The first and last offset kept per partition, as ``{"topic:partition": {"first", "last"}}``."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for partition, offset in taken:  # a partition is read in offset order
        first.setdefault(partition, offset)
        last[partition] = offset
    return {f"{topic}:{p}": {"first": first[p], "last": last[p]} for p in sorted(first)}

"""Event ids seen recently, so a client's retry does not produce an event twice."""

from __future__ import annotations

from collections import OrderedDict


class DedupWindow:
    """Event ids accepted in the last ``window_s`` seconds (at most ``max_ids`` of them).

    An id is remembered only once its record was acknowledged by Kafka, so a
    request that failed can be retried in full.

    >>> window = DedupWindow(window_s=60, max_ids=2)
    >>> window.remember(["a", "b"], now=0.0)
    >>> window.seen("a", now=30.0), window.seen("a", now=61.0), window.seen("c", now=1.0)
    (True, False, False)
    """

    def __init__(self, window_s: float, max_ids: int) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._ids: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, event_id: str, now: float) -> bool:
        at = self._ids.get(event_id)
        return at is not None and now - at <= self.window_s

    def remember(self, event_ids: list[str], now: float) -> None:
        for event_id in event_ids:
            self._ids[event_id] = now
            self._ids.move_to_end(event_id)
        self._expire(now)

    def _expire(self, now: float) -> None:
        ids = self._ids
        while ids and (len(ids) > self.max_ids or now - next(iter(ids.values())) > self.window_s):
            ids.popitem(last=False)

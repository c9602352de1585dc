"""A producer that knows whether everything it sent was delivered.

Consumer loops commit input offsets only after ``confirm()`` returns, so a crash
at any point replays input rather than dropping output (at-least-once, with
idempotent handling by event_id downstream).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class DeliveryError(RuntimeError):
    """Some records were not acknowledged by the broker."""


class Delivery:
    """Acknowledgements still awaited for one batch's records.

    With ``last_offsets`` it also records, per (topic, partition), the offset after the last delivered record.
    """

    __slots__ = ("errors", "last_offsets", "on_delivery", "pending")

    def __init__(self, last_offsets: dict[tuple[str, int], int] | None = None) -> None:
        self.pending = 0
        self.errors: list[str] = []
        self.last_offsets = last_offsets
        # One callback runs per record: the cheaper one when offsets are not wanted.
        self.on_delivery = self._counted if last_offsets is None else self._counted_with_offsets

    @property
    def done(self) -> bool:
        return self.pending == 0

    def _counted(self, err: KafkaError | None, msg: Message) -> None:
        self.pending -= 1
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err.str()}")

    def _counted_with_offsets(self, err: KafkaError | None, msg: Message) -> None:
        self.pending -= 1
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err.str()}")
            return
        assert self.last_offsets is not None
        key = (msg.topic() or "", msg.partition() or 0)
        offset = (msg.offset() or 0) + 1
        if offset > self.last_offsets.get(key, 0):
            self.last_offsets[key] = offset


class ConfirmedProducer:
    """Thin wrapper over ``confluent_kafka.Producer`` that tracks delivery.

    With ``track_offsets``, ``last_offsets`` keeps, per (topic, partition), the
    offset after the last delivered record: the learner stores it in its
    checkpoints. Other services leave it off, which saves work on every record.

    Built with a ``transactional.id``, it is ``transactional`` and exposes the client's transaction
    calls for ``eddy.kafka.transactions``; every record must then be produced inside a transaction.
    """

    def __init__(
        self,
        conf: dict[str, Any],
        track_offsets: bool = False,
        last_offsets: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self._producer = Producer(conf)
        # A table passed in is shared: a stream loop's transactional producer reports into its service's.
        self.last_offsets: dict[tuple[str, int], int] = {} if last_offsets is None else last_offsets
        self.track_offsets = track_offsets
        self.transactional_id = str(conf.get("transactional.id") or "")
        self.transactional = bool(self.transactional_id)
        # Records produced outside any tracked batch report here; confirm() checks it.
        self._untracked = Delivery(self.last_offsets)
        self._delivery: Delivery | None = None

    def track(self) -> Delivery:
        """Track the acknowledgements of every record produced from now until the next ``track()``."""
        self._delivery = Delivery(self.last_offsets if self.track_offsets else None)
        return self._delivery

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        delivery = self._delivery or self._untracked
        while True:
            try:
                self._producer.produce(
                    topic,
                    value,
                    key,
                    on_delivery=delivery.on_delivery,
                    timestamp=timestamp_ms or 0,
                    headers=headers,  # type: ignore[arg-type]  # list is invariant; the stub wants str | bytes | None
                )
                delivery.pending += 1
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                self._producer.poll(0.05)

    def poll(self, timeout_s: float = 0.0) -> None:
        self._producer.poll(timeout_s)

    def wait(self, delivery: Delivery, timeout_s: float = 30.0) -> None:
        """Serve delivery reports until ``delivery`` is complete, sending what waits for ``linger.ms`` now.

        ``linger.ms`` trades latency for fewer requests when nobody waits; a caller blocked here is waiting,
        and librdkafka's ``flush`` sends at once for as long as it runs (``poll`` would wait out the linger:
        25 ms a batch for a background service that keeps one batch in flight).

        Raises
        ------
        DeliveryError
            If any of its records failed, or ``timeout_s`` passed first.
        """
        deadline = time.monotonic() + timeout_s
        while not delivery.done:
            if time.monotonic() >= deadline:
                raise DeliveryError(f"{delivery.pending} records still unacknowledged after {timeout_s:.0f}s")
            self._producer.flush(0.005)
        if delivery.errors:
            raise DeliveryError(f"{len(delivery.errors)} records not delivered, first: {delivery.errors[0]}")

    def confirm(self, timeout_s: float = 30.0) -> None:
        """Block until every record sent so far is acknowledged.

        Raises
        ------
        DeliveryError
            If any record failed or ``timeout_s`` passed first.
        """
        self._delivery = None
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            if remaining == 0 or time.monotonic() >= deadline:
                break
        if self._untracked.errors:
            errors, self._untracked.errors = self._untracked.errors, []
            raise DeliveryError(f"{len(errors)} records not delivered, first: {errors[0]}")
        if remaining:
            raise DeliveryError(f"{remaining} records still unacknowledged after {timeout_s:.0f}s")

    # -- transactions (a producer built with a transactional.id) ---------------------------------------

    def init_transactions(self, timeout_s: float) -> None:
        self._producer.init_transactions(timeout_s)

    def begin_transaction(self) -> None:
        self._producer.begin_transaction()

    def send_offsets_to_transaction(self, positions: list[Any], group_metadata: Any, timeout_s: float) -> None:
        self._producer.send_offsets_to_transaction(positions, group_metadata, timeout_s)

    def commit_transaction(self, timeout_s: float) -> None:
        self._producer.commit_transaction(timeout_s)

    def abort_transaction(self, timeout_s: float) -> None:
        self._producer.abort_transaction(timeout_s)

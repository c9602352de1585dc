"""One Kafka transaction per stream-loop batch: its output and its input offsets commit together, or neither.

With ``EDDY_KAFKA_TRANSACTIONS=true`` a :class:`~eddy.runtime.loop.StreamLoop` runs every batch as::

    begin → produce the outputs → wait for their acknowledgement
          → send_offsets_to_transaction(positions, consumer_group_metadata) → commit

This is KIP-447's pattern: one transactional producer per service instance, fenced by the consumer
group's generation (the group metadata travels with the offsets), so a zombie that lost its partitions
in a rebalance cannot commit offsets or output for them. The ``transactional.id`` is stable per
instance and input (:func:`transactional_id`): a restarted instance's ``init_transactions`` fences its
predecessor and aborts the transaction the crash left open, at once rather than after
``transaction.timeout.ms``, during which read_committed readers of its output would wait.

How a failed call ends (:func:`classify`): retriable errors are retried (bounded in count and time);
abortable ones abort the transaction, and the loop rewinds its consumer to the batch's first records so
the batch is processed again; fatal ones (fenced: another producer took this ``transactional.id``)
raise :class:`TransactionFatal`, which ends the process for its supervisor to restart.

What this does not buy on the embedded broker: Tansu shows aborted records to read_committed readers,
so there correctness still rests on idempotence by event id (``docs/reliability.md``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from eddy.kafka.producer import ConfirmedProducer

log = logging.getLogger(__name__)

Outcome = Literal["retry", "abort", "fatal"]
# Another producer took over this transactional.id, or the broker refuses it one: going on cannot help.
FENCED = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)
MAX_ATTEMPTS = 8
RETRY_BACKOFF_S = 0.2
# How long past its own timeout a transaction call may take before it is taken as stuck.
STUCK_GRACE_S = 15.0


class TransactionFatal(RuntimeError):
    """The transactional producer cannot go on (fenced, or a fatal client error): the process must exit."""


class TransactionAborted(RuntimeError):
    """The batch's transaction failed in a way that needs an abort; the batch must be processed again."""


def transactional_id(group_id: str, instance: str, topics: Iterable[str]) -> str:
    """The ``transactional.id`` of one stream loop: its group, its instance and a digest of its input topics.

    The same instance reading the same input gets the same id after every restart, which is what lets
    its ``init_transactions`` fence a predecessor; replicas differ by ``instance``, loops of one process
    by their topics.

    Examples
    --------
    >>> transactional_id("eddy-validation", "host-a", ["demo.events"])
    'eddy-validation.host-a.a1eb12e1'
    >>> transactional_id("g", "i", ["b", "a"]) == transactional_id("g", "i", ["a", "b", "a"])
    True
    """
    digest = hashlib.sha256(",".join(sorted(set(topics))).encode()).hexdigest()[:8]
    return f"{group_id}.{instance}.{digest}"


def classify(error: KafkaError) -> Outcome:
    """What to do after a transaction call failed with ``error``.

    Fenced and fatal errors end the producer; retriable ones are tried again; an error that requires an
    abort aborts. Anything else is taken as fatal: a restart, which fences and aborts, is always safe.

    Examples
    --------
    >>> classify(KafkaError(KafkaError._TIMED_OUT, retriable=True))
    'retry'
    >>> classify(KafkaError(KafkaError._FENCED, txn_requires_abort=True))
    'fatal'
    >>> classify(KafkaError(KafkaError._TRANSPORT, txn_requires_abort=True))
    'abort'
    """
    if error.fatal() or error.code() in FENCED:
        return "fatal"
    if error.retriable():
        return "retry"
    if error.txn_requires_abort():
        return "abort"
    return "fatal"


class Transactions:
    """The transaction calls of one stream loop's producer, with their retries and outcomes.

    Parameters
    ----------
    producer : ConfirmedProducer
        Built with a ``transactional.id`` (``producer.transactional``).
    consumer : Consumer
        The loop's consumer: its group metadata goes with the offsets.
    timeout_s : float
        Longest any one call, retries included, may take.
    """

    def __init__(self, producer: ConfirmedProducer, consumer: Consumer, timeout_s: float = 30.0) -> None:
        if not producer.transactional:
            raise ValueError("a transactional stream loop needs a producer built with a transactional.id")
        self.producer = producer
        self.consumer = consumer
        self.timeout_s = timeout_s
        self.started = False
        self.open = False
        self.failed = False
        self.committed = 0
        self.aborted = 0

    def start(self) -> None:
        """``init_transactions``: fences a predecessor with the same id and aborts what it left open."""
        if not self.started:
            self._call(lambda: self.producer.init_transactions(self.timeout_s), "init_transactions", abortable=False)
            self.started = True
            log.info("transactions ready", extra={"transactional_id": self.producer.transactional_id})

    def begin(self) -> None:
        self.start()
        self._call(self.producer.begin_transaction, "begin_transaction", abortable=False)
        self.open = True

    def commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Add the consumer's ``offsets`` to the open transaction and commit it.

        Raises
        ------
        TransactionAborted
            The transaction must be aborted (also when retries ran out): call :meth:`abort`.
        TransactionFatal
            The producer cannot go on.
        """
        if offsets:
            positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            metadata = self.consumer.consumer_group_metadata()
            self._call(
                lambda: self.producer.send_offsets_to_transaction(positions, metadata, self.timeout_s),
                "send_offsets_to_transaction",
                abortable=True,
            )
        self._call(lambda: self.producer.commit_transaction(self.timeout_s), "commit_transaction", abortable=True)
        self.open = False
        self.committed += 1

    def abort(self) -> None:
        """Abort the open transaction; what it produced is discarded by read_committed readers (on real Kafka)."""
        self._call(lambda: self.producer.abort_transaction(self.timeout_s), "abort_transaction", abortable=False)
        self.open = False
        self.aborted += 1

    def close(self) -> None:
        """Abort a transaction left open (the loop is stopping mid-batch), unless the producer already failed."""
        if self.open and not self.failed:
            try:
                self.abort()
            except Exception:
                log.exception("could not abort the open transaction; it times out on the broker")

    def _call(self, action: Callable[[], None], what: str, abortable: bool) -> None:
        """Run ``action``, retrying retriable errors.

        With ``abortable`` (the calls of an open transaction), an error requiring an abort, or retries run
        out, raise :class:`TransactionAborted`; anything else, and every failure of the other calls, raises
        :class:`TransactionFatal`.
        """
        deadline = time.monotonic() + self.timeout_s
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self._bounded(action, what)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                outcome = classify(error) if error is not None else "fatal"
                detail = f"{what}: {error.str() if error is not None else exc}"
                if outcome == "retry" and attempt < MAX_ATTEMPTS and time.monotonic() + RETRY_BACKOFF_S < deadline:
                    log.warning("transaction call failed, retrying", extra={"error": detail, "attempt": attempt})
                    time.sleep(RETRY_BACKOFF_S)
                    continue
                if outcome == "retry":
                    detail += f" (gave up after {attempt} attempts)"
                if abortable and outcome != "fatal":
                    raise TransactionAborted(detail) from exc
                self.failed = True
                if error is not None and error.code() in FENCED:
                    detail += " (fenced: another producer has this transactional.id; is EDDY_INSTANCE_ID unique?)"
                raise TransactionFatal(detail) from exc

    def _bounded(self, action: Callable[[], None], what: str) -> None:
        """Run ``action`` in a helper thread; if it does not return in time, give the producer up.

        librdkafka does not always keep a transaction call's timeout: ``send_offsets_to_transaction``
        can block for good once the group coordinator's broker went away (librdkafka issues 5456 and
        5511; seen here when a broker was stopped under load). Blocked in the main thread, it also kept
        the service from acting on SIGTERM. A stuck call cannot be cancelled, so the producer is done
        for: :class:`TransactionFatal` ends the process, and its successor's ``init_transactions``
        fences this producer and aborts the open transaction, whose batch is then read again.
        """
        outcome: list[BaseException] = []
        done = threading.Event()

        def run() -> None:
            try:
                action()
            except BaseException as exc:  # handed to the caller's thread
                outcome.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name=f"transactions-{what}", daemon=True).start()
        limit_s = self.timeout_s + STUCK_GRACE_S
        if not done.wait(limit_s):
            self.failed = True
            log.error("transaction call stuck; the producer is given up", extra={"call": what, "after_s": limit_s})
            raise TransactionFatal(
                f"{what} did not return within {limit_s:.0f}s (its timeout was {self.timeout_s:.0f}s)"
            )
        if outcome:
            raise outcome[0]

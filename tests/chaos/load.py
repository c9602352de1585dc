"""The load of a chaos run: seeded events and labels, sent at a bounded constant rate through the real doors.

Events go in through the HTTP gateway (``POST /v1/streams/S/events``, as clients do) and, a share of
them, straight to ``S.events`` with an idempotent producer (as ``eddy produce`` and the demo feed do).
Each accepted valid event is labelled ``label_delay_s`` later through the gateway's feedback door.

Three kinds of event are sent: valid ones; *invalid* ones, which the gateway accepts (they fit the Avro
schema) but which break the contract, so validation must dead-letter them; and *refused* ones, which
do not fit the schema, so the gateway turns them away and they must appear nowhere.

What the load knows afterwards (:class:`LoadLog`) is what the checker holds the stack to: an event the
gateway or the broker acknowledged is *accepted*. A request that failed (the gateway was killed or
stopped, or answered 429/5xx) is sent again as a client would, so an event whose first answer was lost
may reach ``S.events`` twice: the stack must absorb that.
"""

from __future__ import annotations

import heapq
import queue
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from confluent_kafka import KafkaError, Message, Producer
from eddy.avro.serde import TopicSerde
from eddy.core.topics import StreamTopics

EventKind = Literal["valid", "invalid", "refused"]
Route = Literal["http", "direct"]
REGIONS = ("north", "south", "east", "west")
# How long a failed request waits before it is sent again.
RETRY_AFTER_S = 0.25
TICK_S = 0.02


@dataclass(frozen=True)
class LoadConfig:
    """How much load, how fast, and of which kinds.

    ``events`` are sent at ``rate`` per second; the load then has ``grace_s`` to get every event and
    label acknowledged, so it is bounded in count and in time (``events / rate + grace_s``).
    """

    stream: str
    events: int = 6000
    rate: float = 400.0
    invalid_share: float = 0.03
    refused_share: float = 0.01
    direct_share: float = 0.25
    unlabelled_share: float = 0.1
    label_noise: float = 0.05
    label_delay_s: float = 1.0
    max_request: int = 500
    request_timeout_s: float = 2.0
    grace_s: float = 60.0

    @property
    def duration_s(self) -> float:
        return self.events / self.rate


@dataclass(frozen=True)
class PlannedEvent:
    """One event of the plan: its fields (all but the event time, set when it is first sent), its kind,
    the door it goes through, and its label (None: it gets none)."""

    event_id: str
    fields: dict[str, Any]
    kind: EventKind
    route: Route
    label: bool | None


def plan_events(seed: int, config: LoadConfig) -> list[PlannedEvent]:
    """The events of a run, the same for the same seed and config.

    Valid events follow SEA's first concept (``x0 + x1 <= 8``, ``label_noise`` of the labels flipped),
    with no drift: the champion stays the champion, so every label has one learner to reach.

    >>> a, b = plan_events(7, LoadConfig("s", events=200)), plan_events(7, LoadConfig("s", events=200))
    >>> a == b, len(a), {e.kind for e in a} == {"valid", "invalid", "refused"}
    (True, 200, True)
    """
    rng = random.Random(seed)
    planned: list[PlannedEvent] = []
    for index in range(config.events):
        x = [round(rng.uniform(0.0, 10.0), 4) for _ in range(3)]
        fields: dict[str, Any] = {"x0": x[0], "x1": x[1], "x2": x[2], "region": rng.choice(REGIONS)}
        draw = rng.random()
        kind: EventKind = "valid"
        if draw < config.refused_share:
            kind = "refused"
            fields["x1"] = "n/a"  # not a double: the gateway cannot even encode it
        elif draw < config.refused_share + config.invalid_share:
            kind = "invalid"
            if rng.random() < 0.5:
                fields["x0"] = round(rng.uniform(10.5, 20.0), 4)  # above the contract's maximum
            else:
                fields["region"] = "mars"  # not an allowed region
        route: Route = "direct" if kind != "refused" and rng.random() < config.direct_share else "http"
        truth = x[0] + x[1] <= 8.0
        if rng.random() < config.label_noise:
            truth = not truth
        labelled = kind == "valid" and rng.random() >= config.unlabelled_share
        planned.append(PlannedEvent(f"s{seed}-{index}", fields, kind, route, truth if labelled else None))
    return planned


@dataclass
class Sent:
    """What became of one event or label: first try, acknowledgement (None: never), tries, outcome.

    ``outcome`` is ``accepted`` (acknowledged), ``duplicate`` (the gateway said an earlier copy was
    acknowledged), ``refused`` (the gateway turned it away) or ``pending`` (never answered).
    """

    first_try_ms: int
    acked_ms: int | None = None
    tries: int = 0
    outcome: str = "pending"

    @property
    def accepted(self) -> bool:
        return self.outcome in ("accepted", "duplicate")


@dataclass
class LoadLog:
    """Everything the load sent and what it was told, for the checker."""

    plan: dict[str, PlannedEvent]
    events: dict[str, Sent] = field(default_factory=dict)
    labels: dict[str, Sent] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    largest_request: int = 0
    started_ms: int = 0
    ended_ms: int = 0
    # Answers the plan did not expect (a valid event refused, a malformed one accepted): a broken load.
    surprises: list[str] = field(default_factory=list)

    def accepted_events(self, *kinds: EventKind) -> set[str]:
        return {
            event_id
            for event_id, sent in self.events.items()
            if sent.accepted and (not kinds or self.plan[event_id].kind in kinds)
        }

    def accepted_labels(self) -> dict[str, bool]:
        labels: dict[str, bool] = {}
        for event_id, sent in self.labels.items():
            label = self.plan[event_id].label
            if sent.accepted and label is not None:
                labels[event_id] = label
        return labels


def now_ms() -> int:
    return int(time.time() * 1000)


class LoadRunner:
    """Sends a plan: the HTTP door in one thread (events, then labels), the direct door in another.

    The two doors are separate threads so that a stopped gateway (requests hang until their timeout)
    does not slow the direct producer: each door keeps its own constant rate, catching up after an
    outage in requests of at most ``max_request`` records.
    """

    def __init__(
        self, config: LoadConfig, plan: list[PlannedEvent], gateway_url: str, producer: Producer, serde: TopicSerde
    ) -> None:
        self.config = config
        self.plan = plan
        self.gateway_url = gateway_url.rstrip("/")
        self.producer = producer
        self.serde = serde
        self.topics = StreamTopics(config.stream)
        self.log = LoadLog({e.event_id: e for e in plan})
        self._direct_acks: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._direct_done = threading.Event()
        self._started = 0.0
        self._deadline = 0.0

    def run(self, stop: threading.Event) -> LoadLog:
        """Send everything (or stop at the deadline, or when ``stop`` is set); returns the log."""
        self._started = time.monotonic()
        self._deadline = self._started + self.config.duration_s + self.config.grace_s
        self.log.started_ms = now_ms()
        direct = threading.Thread(target=self._run_direct, args=(stop,), name="chaos-load-direct")
        direct.start()
        try:
            self._run_http(stop)
        finally:
            direct.join()
            self.log.ended_ms = now_ms()
        return self.log

    def _due(self, now: float) -> int:
        """How many events of the plan are due by ``now``."""
        return min(len(self.plan), int((now - self._started) * self.config.rate) + 1)

    # -- the direct door -----------------------------------------------------------------------------

    def _run_direct(self, stop: threading.Event) -> None:
        mine = [e for e in self.plan if e.route == "direct"]
        position = {e.event_id: i for i, e in enumerate(self.plan)}
        sent = 0
        try:
            while not stop.is_set() and time.monotonic() < self._deadline:
                due = self._due(time.monotonic())
                while sent < len(mine) and position[mine[sent].event_id] < due:
                    self._produce(mine[sent])
                    sent += 1
                self.producer.poll(0)
                if sent == len(mine) and len(self.producer) == 0:
                    break
                time.sleep(TICK_S)
            self.producer.flush(max(0.0, min(30.0, self._deadline - time.monotonic())))
        finally:
            self._direct_done.set()

    def _produce(self, event: PlannedEvent) -> None:
        at = now_ms()
        value = {"event_id": event.event_id, "event_time_ms": at, **event.fields}
        record = self.log.events[event.event_id] = Sent(at, tries=1)

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                record.acked_ms, record.outcome = now_ms(), "accepted"
                self._direct_acks.put(event.event_id)
            else:
                self.log.failures[f"direct: {err.name()}"] += 1

        self.producer.produce(
            self.topics.events,
            self.serde.encode(value),
            event.event_id.encode(),
            on_delivery=delivered,
            timestamp=at,
            headers=[("eddy.ingested_at_ms", str(at).encode())],
        )

    # -- the HTTP door -------------------------------------------------------------------------------

    def _run_http(self, stop: threading.Event) -> None:
        mine = [e for e in self.plan if e.route == "http"]
        position = {e.event_id: i for i, e in enumerate(self.plan)}
        next_event = 0
        waiting: list[PlannedEvent] = []  # due, not yet acknowledged
        labels_due: list[tuple[float, str]] = []
        labels_waiting: list[dict[str, Any]] = []
        retry_events_at = retry_labels_at = 0.0
        with httpx.Client(timeout=self.config.request_timeout_s) as client:
            while not stop.is_set():
                now = time.monotonic()
                if now >= self._deadline:
                    break
                due = self._due(now)
                while next_event < len(mine) and position[mine[next_event].event_id] < due:
                    event = mine[next_event]
                    self.log.events[event.event_id] = Sent(now_ms())
                    waiting.append(event)
                    next_event += 1
                while True:
                    try:
                        acked = self._direct_acks.get_nowait()
                    except queue.Empty:
                        break
                    self._label_later(acked, labels_due)
                if waiting and now >= retry_events_at:
                    batch = waiting[: self.config.max_request]
                    if self._send_events(client, batch, labels_due):
                        del waiting[: len(batch)]
                    else:
                        retry_events_at = time.monotonic() + RETRY_AFTER_S
                while labels_due and labels_due[0][0] <= now:
                    _, event_id = heapq.heappop(labels_due)
                    self.log.labels[event_id] = Sent(now_ms())
                    labels_waiting.append(
                        {"event_id": event_id, "label": self.log.plan[event_id].label, "label_time_ms": now_ms()}
                    )
                if labels_waiting and now >= retry_labels_at:
                    batch_labels = labels_waiting[: self.config.max_request]
                    if self._send_labels(client, batch_labels):
                        del labels_waiting[: len(batch_labels)]
                    else:
                        retry_labels_at = time.monotonic() + RETRY_AFTER_S
                finished = next_event == len(mine) and not waiting and not labels_due and not labels_waiting
                if finished and self._direct_done.is_set() and self._direct_acks.empty():
                    break
                time.sleep(TICK_S)

    def _label_later(self, event_id: str, labels_due: list[tuple[float, str]]) -> None:
        if self.log.plan[event_id].label is not None:
            heapq.heappush(labels_due, (time.monotonic() + self.config.label_delay_s, event_id))

    def _post(self, client: httpx.Client, kind: str, records: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """The per-record results of one request, or None if it must be sent again."""
        self.log.largest_request = max(self.log.largest_request, len(records))
        url = f"{self.gateway_url}/v1/streams/{self.config.stream}/{kind}"
        try:
            response = client.post(url, json=records)
        except httpx.HTTPError as exc:
            self.log.failures[f"{kind}: {type(exc).__name__}"] += 1
            return None
        if response.status_code not in (200, 207, 422):
            self.log.failures[f"{kind}: HTTP {response.status_code}"] += 1
            return None
        try:
            results: list[dict[str, Any]] = response.json()["results"]
        except (ValueError, KeyError):
            self.log.failures[f"{kind}: unreadable answer"] += 1
            return None
        return results

    def _send_events(
        self, client: httpx.Client, batch: list[PlannedEvent], labels_due: list[tuple[float, str]]
    ) -> bool:
        records = []
        for event in batch:
            sent = self.log.events[event.event_id]
            sent.tries += 1
            # The event time is fixed at the first try: a retry sends the same record.
            at = sent.first_try_ms
            records.append({"event_id": event.event_id, "event_time_ms": at, **event.fields})
        results = self._post(client, "events", records)
        if results is None:
            return False
        acked = now_ms()
        for result in results:
            event = batch[result["index"]]
            sent = self.log.events[event.event_id]
            status = result["status"]
            if status in ("accepted", "duplicate"):
                sent.acked_ms, sent.outcome = acked, status
                if event.kind == "refused":
                    self.log.surprises.append(f"{event.event_id}: malformed event accepted")
                self._label_later(event.event_id, labels_due)
            else:
                sent.outcome = "refused"
                if event.kind != "refused":
                    self.log.surprises.append(f"{event.event_id}: refused: {result.get('error')}")
        return True

    def _send_labels(self, client: httpx.Client, records: list[dict[str, Any]]) -> bool:
        for record in records:
            self.log.labels[record["event_id"]].tries += 1
        results = self._post(client, "feedback", records)
        if results is None:
            return False
        acked = now_ms()
        for result in results:
            sent = self.log.labels[records[result["index"]]["event_id"]]
            if result["status"] in ("accepted", "duplicate"):
                sent.acked_ms, sent.outcome = acked, result["status"]
            else:
                sent.outcome = "refused"
                self.log.surprises.append(f"label of {records[result['index']]['event_id']} refused")
        return True

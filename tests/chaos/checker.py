"""The checker: from the topics themselves, what the stack lost, duplicated, never learned or did out of order.

Every topic of the stream is read from the beginning to each partition's end (partition EOF, never a
"latest" offset: the embedded broker answers that one wrong) and decoded with the stream's own Avro
serdes. What was *accepted* comes from the load's log: an event or label the gateway or the broker
acknowledged. The checks, per event id (``docs/reliability.md`` says why each is what it is):

Lost
    - accepted but not in ``S.events``;
    - in ``S.events`` but neither in ``S.validated`` nor in ``S.dlq``;
    - in ``S.validated`` but with no served prediction in ``S.predictions``;
    - a label accepted but not in ``S.feedback``.
Misrouted
    a valid event dead-lettered, an invalid one validated, or a refused one anywhere.
Duplicated
    - *served twice*: more than one served prediction for an event once duplicates are dropped the way
      eddy's readers drop them (the first record per event id and model version: monitoring, datasets,
      backtests, the learner); that is, two different versions answered it;
    - *redeliveries*: served prediction records beyond the first, the raw at-least-once copies. They
      are allowed and put down to the fault that caused them; what services redelivered after one fault
      is bounded by what a loop can have in flight (``EDDY_BATCH_SIZE`` times its in-flight batches),
      while a client's resends into a stopped gateway are reported only;
    - *labels learned twice*: two ``S.labeled`` examples of one event by one version, or a version whose
      learner counts more labels (its snapshots' ``learned_count``) than it has examples.
Unseen labels
    an accepted label of a predicted event that its serving version never learned (no ``S.labeled``
    example), though every label here is well within the contract's allowed lateness.
Out of order
    - *join*: a labeled example that does not carry the first served prediction of its event (it was
      joined with a redelivered copy, or with no prediction at all);
    - *snapshot regression*: within one ``S.predictions`` partition, in offset order and over first
      copies, a prediction served by an older snapshot (smaller ``model_learned``) than one already
      served to an earlier event of that partition by the same version.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from eddy.avro.serde import SerdeError, SerdeRegistry
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.kafka.client import assign_from, consumer_config
from eddy.runtime.dlq import read_dlq_headers

from tests.chaos.broker_faults import BrokerFaultRecord
from tests.chaos.faults import ChildEvent, FaultRecord
from tests.chaos.load import LoadLog

READ_BATCH = 10_000
EXAMPLES = 3
# Names of the checks the acceptance criteria count, for summaries across runs.
LOST = (
    "events lost at ingestion",
    "events lost in validation",
    "validated, never predicted",
    "labels lost at ingestion",
)
SERVED_TWICE = "served twice (eddy's readers)"
LEARNED_TWICE = "labels learned twice"
REDELIVERIES = "redeliveries per fault (max)"
ABORTED = "aborted records hidden"
STUCK_EXITS = "exits for a stuck client call"


@dataclass(frozen=True)
class Copy:
    """One decoded record: where it is and what it says."""

    partition: int
    offset: int
    value: dict[str, Any]


@dataclass
class StreamRecords:
    """The stream's topics as read to their end, indexed by event id where that is how they are checked."""

    events: dict[str, list[Copy]] = field(default_factory=lambda: defaultdict(list))
    validated: dict[str, list[Copy]] = field(default_factory=lambda: defaultdict(list))
    # Dead letters by the event id of the record they keep, and their reasons.
    dead_events: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    dead_labels: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    predictions: list[Copy] = field(default_factory=list)
    feedback: dict[str, list[Copy]] = field(default_factory=lambda: defaultdict(list))
    labeled: list[Copy] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    read: Counter[str] = field(default_factory=Counter)
    undecodable: Counter[str] = field(default_factory=Counter)


def read_to_end(
    settings: Settings, topics: list[str], timeout_s: float = 300.0, isolation: str = "read_uncommitted"
) -> Iterator[Message]:
    """Every record of ``topics``, each partition up to its end as the read finds it (partition EOF)."""
    overrides: dict[str, Any] = {"enable.partition.eof": True, "isolation.level": isolation}
    config = consumer_config(settings, f"eddy-chaos-check-{uuid.uuid4().hex[:8]}", **overrides)
    consumer = Consumer(config)
    try:
        assign_from(consumer, topics)
        reading = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        deadline = time.monotonic() + timeout_s
        while reading:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(reading)} partitions not read to their end in {timeout_s:.0f}s")
            for msg in consumer.consume(READ_BATCH, 0.5):
                err, where = msg.error(), (msg.topic(), msg.partition())
                if err is None:
                    if where in reading:
                        yield msg
                elif err.code() == KafkaError._PARTITION_EOF and _at_end(consumer, msg, isolation):
                    reading.discard(where)
    finally:
        consumer.close()


def _at_end(consumer: Consumer, eof: Message, isolation: str) -> bool:
    """Whether an end-of-partition event is the end: Tansu sometimes reports it before the last records.

    Under read_committed the end is the last stable offset, which the event reports; otherwise it is the
    high watermark of the fetch (as ``eddy.history.reader`` decides, measured on both brokers).
    """
    if isolation == "read_committed":
        return True
    _, high = consumer.get_watermark_offsets(TopicPartition(eof.topic() or "", eof.partition() or 0), cached=True)
    return high < 0 or (eof.offset() or 0) >= high


def count_records(settings: Settings, topics: list[str], isolation: str = "read_uncommitted") -> Counter[str]:
    """How many records each of ``topics`` holds, counted to the end of every partition."""
    return Counter(msg.topic() or "" for msg in read_to_end(settings, topics, isolation=isolation))


def hidden_by_isolation(settings: Settings, stream: str, committed: Counter[str]) -> Counter[str]:
    """Per topic, how many more records read_uncommitted reads than ``committed`` (a read_committed count).

    Once the stack has settled no transaction is open, so these are the records of aborted transactions:
    what read_committed readers must not see. On Apache Kafka the difference is the evidence that
    transactions were aborted under the faults and hidden; on Tansu it stays 0 (it shows them).
    """
    topics = StreamTopics(stream)
    names = [topics.events, topics.validated, topics.dlq, topics.predictions, topics.feedback, topics.labeled]
    every = count_records(settings, names)
    return Counter({t: every[t] - committed.get(t, 0) for t in names if every[t] != committed.get(t, 0)})


def read_stream(
    settings: Settings, serdes: SerdeRegistry, stream: str, isolation: str = "read_uncommitted"
) -> StreamRecords:
    """Read and decode every topic the checks need."""
    topics = StreamTopics(stream)
    wanted = [
        topics.events,
        topics.validated,
        topics.dlq,
        topics.predictions,
        topics.feedback,
        topics.labeled,
        topics.models,
    ]
    out = StreamRecords()
    for msg in read_to_end(settings, wanted, isolation=isolation):
        topic = msg.topic() or ""
        out.read[topic] += 1
        if topic == topics.dlq:
            _dead_letter(serdes, topics, msg, out)
            continue
        try:
            value = serdes.for_topic(topic).decode(msg.value())
        except SerdeError:
            out.undecodable[topic] += 1
            continue
        copy = Copy(msg.partition() or 0, msg.offset() or 0, value)
        if topic == topics.events:
            out.events[value["event_id"]].append(copy)
        elif topic == topics.validated:
            out.validated[value["event_id"]].append(copy)
        elif topic == topics.predictions:
            out.predictions.append(copy)
        elif topic == topics.feedback:
            out.feedback[value["event_id"]].append(copy)
        elif topic == topics.labeled:
            out.labeled.append(copy)
        else:
            out.snapshots.append(value)
    out.predictions.sort(key=lambda c: (c.partition, c.offset))
    out.labeled.sort(key=lambda c: (c.partition, c.offset))
    return out


def _dead_letter(serdes: SerdeRegistry, topics: StreamTopics, msg: Message, out: StreamRecords) -> None:
    """File a dead letter under the event id of the record it keeps (its key if that does not decode)."""
    meta = read_dlq_headers(msg.headers())
    source, reason = meta.get("source.topic", ""), meta.get("reason", "?")
    event_id: str | None = None
    if source in (topics.events, topics.feedback):
        try:
            event_id = serdes.for_topic(source).decode(msg.value())["event_id"]
        except (SerdeError, KeyError):
            event_id = None
    if event_id is None:
        key = msg.key()
        event_id = key.decode("utf-8", "replace") if key else "?"
    target = out.dead_labels if source == topics.feedback else out.dead_events
    target[event_id].append(reason)


@dataclass(frozen=True)
class Check:
    """One row of the verdict: a count, the most it may be (None: reported only), and why."""

    name: str
    count: int
    limit: int | None = 0
    detail: str = ""
    examples: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.limit is None or self.count <= self.limit

    @property
    def verdict(self) -> str:
        return "info" if self.limit is None else "PASS" if self.passed else "FAIL"


@dataclass
class Verdict:
    """Every check of one run; the run fails if any invariant is violated."""

    checks: list[Check]
    redeliveries_by_fault: list[Redelivery] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{'check':<{width}}  {'count':>7}  {'limit':>6}  verdict  detail"]
        for c in self.checks:
            limit = "-" if c.limit is None else str(c.limit)
            detail = c.detail
            if c.examples and not c.passed:
                detail += f" e.g. {', '.join(c.examples)}"
            lines.append(f"{c.name:<{width}}  {c.count:>7}  {limit:>6}  {c.verdict:<7}  {detail}".rstrip())
        lines.append(f"VERDICT: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)


@dataclass(frozen=True)
class RunFacts:
    """What the checker needs besides the topics and the load: the faults and the stack's limits."""

    faults: Sequence[FaultRecord]
    unexplained_exits: Sequence[ChildEvent]
    services_down: Sequence[str]
    champion: tuple[str, int]
    batch_size: int
    max_in_flight: int
    broker_faults: Sequence[BrokerFaultRecord] = ()
    # Exits the service's own log explains: it gave up a transactional producer whose call hung.
    stuck_exits: Sequence[ChildEvent] = ()
    # Transactions on Apache Kafka: read_committed readers never see an aborted record, so a service's
    # redelivery (its output written again after a fault) would be a failure, not an allowed copy.
    exactly_once: bool = False
    # Per topic, the records a read_uncommitted read found beyond the checker's read_committed one.
    hidden: Counter[str] | None = None


def _examples(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(ids)[:EXAMPLES])


def _first_per_version(predictions: Sequence[Copy]) -> dict[tuple[str, str, int], Copy]:
    """The first record (lowest offset: one event id is in one partition) of each event and model version."""
    first: dict[tuple[str, str, int], Copy] = {}
    for copy in predictions:
        v = copy.value
        first.setdefault((v["event_id"], v["model_name"], v["model_version"]), copy)
    return first


def check(records: StreamRecords, load: LoadLog, facts: RunFacts) -> Verdict:
    """Every check of the module docstring, as a verdict."""
    valid, invalid = load.accepted_events("valid"), load.accepted_events("invalid")
    refused = {e for e, p in load.plan.items() if p.kind == "refused"}
    served = [c for c in records.predictions if c.value["served"]]
    served_by_event: dict[str, list[Copy]] = defaultdict(list)
    for copy in served:
        served_by_event[copy.value["event_id"]].append(copy)
    first = _first_per_version(records.predictions)
    per_fault = _by_fault(load, records, served_by_event, facts.faults, facts.broker_faults)
    checks = [
        *_lost(records, load, served_by_event),
        _misrouted(records, valid, invalid, refused),
        *_served(served_by_event, facts.champion),
        _redeliveries(served_by_event, per_fault, facts),
        *_learning(records, load, served_by_event),
        *_order(records, first),
        *_process(load, facts),
        *_brokers(facts),
    ]
    return Verdict(checks, per_fault)


def _lost(records: StreamRecords, load: LoadLog, served_by_event: dict[str, list[Copy]]) -> list[Check]:
    accepted = load.accepted_events()
    not_in_events = accepted - records.events.keys()
    unrouted = {e for e in records.events if e not in records.validated and e not in records.dead_events}
    unpredicted = {e for e in records.validated if e not in served_by_event}
    labels = load.accepted_labels()
    labels_missing = labels.keys() - records.feedback.keys()
    pending = [e for e, s in load.events.items() if s.outcome == "pending"]
    return [
        Check(
            "events lost at ingestion",
            len(not_in_events),
            detail=f"of {len(accepted)} accepted ({len(pending)} never answered, not counted)",
            examples=_examples(not_in_events),
        ),
        Check(
            "events lost in validation",
            len(unrouted),
            detail=f"of {len(records.events)} in S.events: neither validated nor dead-lettered",
            examples=_examples(unrouted),
        ),
        Check(
            "validated, never predicted",
            len(unpredicted),
            detail=f"of {len(records.validated)} validated: no served prediction",
            examples=_examples(unpredicted),
        ),
        Check(
            "labels lost at ingestion",
            len(labels_missing),
            detail=f"of {len(labels)} accepted labels: not in S.feedback",
            examples=_examples(labels_missing),
        ),
    ]


def _misrouted(records: StreamRecords, valid: set[str], invalid: set[str], refused: set[str]) -> Check:
    dead_valid = valid & records.dead_events.keys()
    validated_invalid = invalid & records.validated.keys()
    leaked = refused & (records.events.keys() | records.validated.keys())
    wrong = dead_valid | validated_invalid | leaked
    reasons = Counter(r for e in invalid for r in records.dead_events.get(e, []))
    shown = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
    return Check(
        "events misrouted",
        len(wrong),
        detail=f"{len(invalid)} invalid dead-lettered as: {shown or 'none'}",
        examples=_examples(wrong),
    )


def _served(served_by_event: dict[str, list[Copy]], champion: tuple[str, int]) -> list[Check]:
    twice = {
        e
        for e, copies in served_by_event.items()
        if len({(c.value["model_name"], c.value["model_version"]) for c in copies}) > 1
    }
    others = Counter(
        f"{c.value['model_name']}@{c.value['model_version']}"
        for copies in served_by_event.values()
        for c in copies
        if (c.value["model_name"], c.value["model_version"]) != champion
    )
    return [
        Check(
            SERVED_TWICE,
            len(twice),
            detail="event ids answered by two model versions after first-per-version dedup",
            examples=_examples(twice),
        ),
        Check(
            "served by a non-champion",
            sum(others.values()),
            detail=f"champion {champion[0]}@{champion[1]} fixed for the run; others: {dict(others) or 'none'}",
        ),
    ]


@dataclass(frozen=True)
class Redelivery:
    """Extra served prediction records of one origin, put down to one fault (``cause``).

    ``origin`` is where the extra copy began: ``client`` (the event reached S.events twice: a request
    whose answer was lost was sent again), ``validation`` (S.events once, S.validated twice) or
    ``inference`` (S.validated once, served twice).
    """

    cause: str
    origin: str
    records: int

    def __str__(self) -> str:
        return f"{self.cause}: {self.origin} {self.records}"


SERVICE_ORIGINS = ("validation", "inference")
ORIGIN_SERVICE = {"client": "ingestion", "validation": "validation", "inference": "inference"}


def _redeliveries(served_by_event: dict[str, list[Copy]], per_fault: list[Redelivery], facts: RunFacts) -> Check:
    by_origin: Counter[str] = Counter()
    for r in per_fault:
        by_origin[r.origin] += r.records
    by_cause: Counter[str] = Counter()
    for r in per_fault:
        if r.origin in SERVICE_ORIGINS:
            by_cause[r.cause] += r.records
    worst = max(by_cause.values(), default=0)
    extra = sum(len(c) - 1 for c in served_by_event.values())
    shown = ", ".join(f"{o} {by_origin[o]}" for o in ("client", *SERVICE_ORIGINS))
    bound = f"bound batch {facts.batch_size} x in-flight {facts.max_in_flight}"
    if facts.exactly_once:
        bound = "bound 0: transactions on Kafka, aborted output never visible"
    return Check(
        REDELIVERIES,
        worst,
        limit=0 if facts.exactly_once else facts.batch_size * facts.max_in_flight,
        detail=f"most one fault made services redeliver; {bound}; {extra} extra served records, by origin: {shown}",
    )


def _by_fault(
    load: LoadLog,
    records: StreamRecords,
    served_by_event: dict[str, list[Copy]],
    faults: Sequence[FaultRecord],
    broker_faults: Sequence[BrokerFaultRecord] = (),
) -> list[Redelivery]:
    """Extra served records per (fault, origin).

    A copy was made because a fault came between the event's first try and its second answer: a record
    consumed before a crash (or a stop) is answered again after it, and a client resends what it sent
    while the gateway was down. The cause is the fault whose span (from the signal to the SIGCONT or the
    restart) overlaps that interval, preferring one of the service the copy began at; "no fault" if none.
    """
    spans: list[tuple[int, int, str, str]] = [
        (r.injected_ms, r.resumed_ms or r.restarted_ms or r.exited_ms or r.injected_ms, r.fault.service, r.fault.kind)
        for r in faults
        if r.injected_ms
    ]
    spans += [(*b.span, f"kafka-{b.node_id}", b.fault.kind) for b in broker_faults if b.span]
    counts: Counter[tuple[str, str]] = Counter()
    for event_id, copies in served_by_event.items():
        if len(copies) < 2:
            continue
        origin = (
            "client"
            if len(records.events.get(event_id, ())) > 1
            else "validation"
            if len(records.validated.get(event_id, ())) > 1
            else "inference"
        )
        sent = load.events.get(event_id)
        since, until = (sent.first_try_ms if sent else 0), copies[1].value["predicted_at_ms"]
        overlapping = sorted(
            ((start, who, kind) for start, end, who, kind in spans if start <= until and end >= since),
            key=lambda item: (item[1] != ORIGIN_SERVICE[origin], item[0]),
        )
        cause = "no fault"
        if overlapping:
            start, who, kind = overlapping[0]
            cause = f"+{(start - load.started_ms) / 1000:.1f}s {who} {kind}"
        counts[(cause, origin)] += len(copies) - 1
    return [Redelivery(cause, origin, n) for (cause, origin), n in sorted(counts.items())]


def _learning(records: StreamRecords, load: LoadLog, served_by_event: dict[str, list[Copy]]) -> list[Check]:
    examples: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
    for copy in records.labeled:
        v = copy.value
        examples[(v["model_name"], v["model_version"])][v["event_id"]] += 1
    twice = {f"{e}@{k[0]}/{k[1]}" for k, ids in examples.items() for e, n in ids.items() if n > 1}
    learned = _learned_counts(records.snapshots)
    over, under = 0, 0
    counts = []
    for version in sorted(examples.keys() | learned.keys()):
        distinct = len(examples.get(version, {}))
        count = learned.get(version, 0)
        over += max(0, count - distinct)
        under += max(0, distinct - count)
        counts.append(f"{version[0]}@{version[1]} learned {count} / examples {distinct}")
    labels = load.accepted_labels()
    unseen = set()
    for event_id in labels:
        copies = served_by_event.get(event_id)
        if not copies:
            continue  # never predicted: counted as lost above
        v = copies[0].value
        if examples.get((v["model_name"], v["model_version"]), Counter())[event_id] == 0:
            unseen.add(event_id)
    dead = Counter(r for reasons in records.dead_labels.values() for r in reasons)
    return [
        Check(
            LEARNED_TWICE,
            len(twice) + over,
            detail=f"{len(twice)} duplicate examples; learner counts above examples by {over}",
            examples=_examples(twice),
        ),
        Check(
            "learned, not counted",
            under,
            detail="; ".join(counts) or "no learner snapshot",
        ),
        Check(
            "unseen labels",
            len(unseen),
            detail=f"of {len(labels)} accepted labels; label dead letters: {dict(dead) or 'none'}",
            examples=_examples(unseen),
        ),
    ]


def _learned_counts(snapshots: Sequence[dict[str, Any]]) -> dict[tuple[str, int], int]:
    """Labels each version's learner has learned: the most its snapshots on S.models ever said.

    A version's registry snapshot (no source offsets) gives the count it started from.
    """
    start: dict[tuple[str, int], int] = {}
    most: dict[tuple[str, int], int] = {}
    for s in snapshots:
        key = (s["model_name"], s["model_version"])
        if not s["source_offsets"]:
            if s["model_version"] > 1:
                start.setdefault(key, s["learned_count"])
            continue
        most[key] = max(most.get(key, 0), s["learned_count"])
    return {key: n - start.get(key, 0) for key, n in most.items()}


def _order(records: StreamRecords, first: dict[tuple[str, str, int], Copy]) -> list[Check]:
    wrong_join = set()
    for copy in records.labeled:
        v = copy.value
        prediction = first.get((v["event_id"], v["model_name"], v["model_version"]))
        if prediction is None or prediction.value["model_learned"] != v["model_learned"]:
            wrong_join.add(v["event_id"])
    regressions = []
    newest: dict[tuple[int, str, int], int] = {}
    firsts = {id(c) for c in first.values()}
    for copy in records.predictions:
        if id(copy) not in firsts or not copy.value["served"]:
            continue
        v = copy.value
        key = (copy.partition, v["model_name"], v["model_version"])
        if v["model_learned"] < newest.get(key, -1):
            regressions.append(f"{v['event_id']}@{copy.partition}:{copy.offset}")
        newest[key] = max(newest.get(key, -1), v["model_learned"])
    return [
        Check(
            "out of order: join",
            len(wrong_join),
            detail="labeled examples not carrying their event's first prediction",
            examples=_examples(wrong_join),
        ),
        Check(
            "out of order: snapshot",
            len(regressions),
            detail="served by an older snapshot than an earlier event of its partition",
            examples=tuple(regressions[:EXAMPLES]),
        ),
    ]


def _process(load: LoadLog, facts: RunFacts) -> list[Check]:
    terms = [r for r in facts.faults if r.fault.kind == "SIGTERM" and r.injected_ms is not None]
    unclean = [r for r in terms if r.exit_code != 0]
    skipped = [r for r in facts.faults if r.skipped]
    return [
        Check(
            "SIGTERM exit != 0",
            len(unclean),
            detail=f"of {len(terms)} SIGTERMs",
            examples=tuple(f"{r.fault.service}: {r.exit_code}" for r in unclean[:EXAMPLES]),
        ),
        Check(
            "unexpected exits",
            len(facts.unexplained_exits),
            detail="exits no SIGKILL/SIGTERM explains",
            examples=tuple(f"{e.child}: {e.code}" for e in facts.unexplained_exits[:EXAMPLES]),
        ),
        Check(
            "faults not applied",
            len(skipped),
            detail=f"of {len(facts.faults)} planned",
            examples=tuple(f"{r.fault.service}: {r.skipped}" for r in skipped[:EXAMPLES]),
        ),
        Check(
            "services down after settling",
            len(facts.services_down),
            detail=", ".join(facts.services_down),
        ),
        Check(
            "load surprises",
            len(load.surprises),
            detail="answers the plan did not expect",
            examples=tuple(load.surprises[:EXAMPLES]),
        ),
    ]


def _brokers(facts: RunFacts) -> list[Check]:
    """Broker faults, when the run had them, and what read_committed hid, when transactions were on."""
    checks = []
    if facts.broker_faults:
        skipped = [b for b in facts.broker_faults if b.skipped]
        broken = [b for b in facts.broker_faults if b.injected_ms and not b.whole_ms]
        checks += [
            Check(
                "broker faults not applied",
                len(skipped),
                detail=f"of {len(facts.broker_faults)} planned",
                examples=tuple(b.skipped for b in skipped[:EXAMPLES]),
            ),
            Check(
                "cluster not whole after a fault",
                len(broken),
                detail="a node not back, or a partition's ISR not full, within 120 s",
                examples=tuple(f"kafka-{b.node_id}" for b in broken[:EXAMPLES]),
            ),
        ]
    if facts.stuck_exits:
        checks.append(
            Check(
                STUCK_EXITS,
                len(facts.stuck_exits),
                limit=None,
                detail="send_offsets_to_transaction hung past its timeout (librdkafka 5456, 5511): "
                "the producer was given up and the service restarted",
                examples=tuple(e.child for e in facts.stuck_exits[:EXAMPLES]),
            )
        )
    if facts.hidden is not None:
        shown = ", ".join(f"{t.rsplit('.', 1)[-1]} {n}" for t, n in sorted(facts.hidden.items())) or "none"
        checks.append(
            Check(
                ABORTED,
                sum(facts.hidden.values()),
                limit=None,
                detail=f"read_uncommitted minus read_committed: {shown}",
            )
        )
    return checks

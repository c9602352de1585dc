"""Inspect a stream's dead letters and replay them once the cause is fixed.

``read_dlq`` lists what is in ``S.dlq`` (``eddy dlq S``); ``replay_dlq`` sends
dead letters back to the topic they came from (``eddy dlq replay S``), byte for
byte, so they go through validation again after the contract was fixed.

Replay is at-least-once and safe to run twice: it remembers how far it got in
the consumer group ``eddy-dlq-replay-{stream}``, and moves that mark only after
the broker acknowledged every replayed record. A second run replays only dead
letters that arrived since. Neither function joins a consumer group: partitions
are assigned directly (a group join costs seconds and rebalances nothing here).

Replaying is an operator action: ``audited_replay`` (what ``eddy dlq replay``
runs) records it in the model registry's audit log, under the identity of the
caller's API key, before it sends anything and again with the outcome.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer, Message, TopicPartition

from eddy.core.settings import Settings
from eddy.core.times import iso_utc
from eddy.core.topics import StreamTopics
from eddy.history.reader import HistoryError, HistoryReader, Key, MissingTopic, ReadTimeout
from eddy.kafka.client import committed_offsets, consumer_config, ensure_topics, producer_config
from eddy.kafka.producer import ConfirmedProducer, Headers
from eddy.runtime.dlq import HEADER_PREFIX, NOT_REPLAYABLE, read_dlq_headers

REPLAYED_FROM_HEADER = "eddy.replayed_from"
"""Header added to every replayed record: ``"S.dlq:partition:offset"`` of the dead letter it came from."""

PREVIEW_CHARS = 200
"""Text values up to this many characters are shown whole, longer ones are cut here."""

PREVIEW_BYTES = 48
"""Binary values are shown as the base64 of at most this many leading bytes."""

COMMIT_EVERY = 1000
"""Replay confirms and commits at least this often (in DLQ records), so a long replay saves its progress."""

RecordHeaders = list[tuple[str, bytes | None]]

# The audit log's entries for a replay (event types on eddy.model-events, like a promotion's).
REPLAY_STARTED = "dlq_replay_started"
REPLAYED = "dlq_replayed"
REPLAY_FAILED = "dlq_replay_failed"
REPLAY_AUDIT_ACTIONS = frozenset({REPLAY_STARTED, REPLAYED, REPLAY_FAILED})

AuditRecorder = Callable[[str, dict[str, Any]], None]
"""Records ``(action, details)`` in the audit log, or raises :class:`AuditError`."""


class DlqError(Exception):
    """A DLQ cannot be read or replayed (no such topic, commit refused): one line, fit for the CLI."""


class AuditError(DlqError):
    """The audit log did not take a replay's entry (refused, or not reachable): one line, fit for the CLI."""


def replay_group(stream: str) -> str:
    """The consumer group whose committed offsets mark how far ``replay_dlq`` got in ``S.dlq``."""
    return f"eddy-dlq-replay-{stream}"


# -- entries ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValuePreview:
    """What a human can see of a value without dumping it whole.

    ``encoding`` is ``"text"`` when the bytes are printable UTF-8 (then
    ``preview`` is the text, cut at ``PREVIEW_CHARS``), ``"base64"`` otherwise
    (then ``preview`` is the base64 of the first ``PREVIEW_BYTES`` bytes), and
    ``"null"`` for a record without a value.
    """

    encoding: Literal["text", "base64", "null"]
    preview: str
    size: int
    truncated: bool

    @classmethod
    def of(cls, value: bytes | None) -> ValuePreview:
        """Preview ``value``.

        Examples
        --------
        >>> ValuePreview.of(b'{"x": 1}')
        ValuePreview(encoding='text', preview='{"x": 1}', size=8, truncated=False)
        >>> ValuePreview.of(b"\\x00\\x00\\x00\\x00\\x01\\x02").encoding
        'base64'
        """
        if value is None:
            return cls("null", "", 0, False)
        text = _printable_text(value)
        if text is not None:
            return cls("text", text[:PREVIEW_CHARS], len(value), len(text) > PREVIEW_CHARS)
        head = base64.b64encode(value[:PREVIEW_BYTES]).decode("ascii")
        return cls("base64", head, len(value), len(value) > PREVIEW_BYTES)

    def as_dict(self) -> dict[str, Any] | None:
        if self.encoding == "null":
            return None
        return {"encoding": self.encoding, "preview": self.preview, "size": self.size, "truncated": self.truncated}

    def human(self) -> str:
        if self.encoding == "null":
            return "no value"
        shown = self.preview.replace("\n", "\\n").replace("\r", "\\r").replace("\t", " ")
        more = "..." if self.truncated else ""
        if self.encoding == "text":
            return f"{self.size} B: {shown}{more}"
        return f"{self.size} B, base64: {shown}{more}"


@dataclass(frozen=True)
class DlqEntry:
    """One dead letter: where it sits in ``S.dlq``, why it is there, and what it carries.

    ``key`` and ``value`` are the original bytes; ``headers`` are the original
    record's headers (the ``eddy.dlq.*`` ones are parsed into the other fields).
    ``timestamp_ms`` is the DLQ record's timestamp, which eddy sets to the
    original record's; ``dead_lettered_ms`` is when it was dead-lettered.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    reason: str
    stage: str
    error_class: str
    error_message: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    dead_lettered_ms: int | None
    violations: list[dict[str, Any]]
    headers: RecordHeaders
    value_preview: ValuePreview
    value: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_record(
        cls,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] | None,
    ) -> DlqEntry:
        """Parse one DLQ record (as read from the topic) into an entry.

        Records written by something other than eddy are still listed: missing
        ``eddy.dlq.*`` headers give empty strings and ``None``.
        """
        all_headers: RecordHeaders = list(headers or [])
        meta = read_dlq_headers(all_headers)
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp_ms=timestamp_ms,
            key=key,
            reason=meta.get("reason", ""),
            stage=meta.get("stage", ""),
            error_class=meta.get("error.class", ""),
            error_message=meta.get("error.message", ""),
            source_topic=meta.get("source.topic") or None,
            source_partition=_int_or_none(meta.get("source.partition")),
            source_offset=_int_or_none(meta.get("source.offset")),
            dead_lettered_ms=_int_or_none(meta.get("time")),
            violations=_parse_violations(meta.get("violations")),
            headers=[(k, v) for k, v in all_headers if not k.startswith(HEADER_PREFIX)],
            value_preview=ValuePreview.of(value),
            value=value,
        )

    @classmethod
    def from_message(cls, msg: Message) -> DlqEntry:
        """Parse a consumed DLQ message."""
        ts_type, ts = msg.timestamp()
        return cls.from_record(
            msg.topic() or "",
            msg.partition() or 0,
            msg.offset() or 0,
            ts if ts_type == TIMESTAMP_CREATE_TIME else None,
            msg.key(),
            msg.value(),
            cast(RecordHeaders | None, msg.headers()),
        )

    @property
    def position(self) -> str:
        """``"S.dlq:partition:offset"``: the value of the ``eddy.replayed_from`` header."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def when_ms(self) -> int | None:
        """When it was dead-lettered if known, else the record timestamp."""
        return self.dead_lettered_ms if self.dead_lettered_ms is not None else self.timestamp_ms

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict: bytes shown as text when they are UTF-8, else as ``"base64:..."``."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "dead_lettered_ms": self.dead_lettered_ms,
            "key": _bytes_text(self.key),
            "reason": self.reason,
            "stage": self.stage,
            "error_class": self.error_class,
            "error_message": self.error_message,
            "source": {"topic": self.source_topic, "partition": self.source_partition, "offset": self.source_offset},
            "violations": self.violations,
            "headers": [[k, _bytes_text(v)] for k, v in self.headers],
            "value": self.value_preview.as_dict(),
        }

    def to_json(self) -> str:
        """One line of JSON (``eddy dlq S --json`` prints one per entry)."""
        return json.dumps(self.as_dict(), ensure_ascii=False, default=str)


def format_entry(entry: DlqEntry) -> str:
    """The human view of one entry: reason and provenance, then the error and the value.

    Examples
    --------
    >>> e = DlqEntry.from_record("s.dlq", 1, 7, None, b"e1", b"hi", [("eddy.dlq.reason", b"contract:max")])
    >>> print(format_entry(e))
    contract:max  source ?  -> s.dlq:1:7  key=e1
        (no message)  |  value 2 B: hi
    """
    source = entry.source_topic or "?"
    if entry.source_partition is not None:
        source += f"[{entry.source_partition}]"
    if entry.source_offset is not None:
        source += f"@{entry.source_offset}"
    first = [entry.reason or "(no reason)", f"source {source}", f"-> {entry.position}"]
    if entry.when_ms is not None:
        first.append(iso_utc(entry.when_ms))
    first.append(f"key={_bytes_text(entry.key) if entry.key is not None else '-'}")
    if entry.stage:
        first.append(f"stage={entry.stage}")
    message = " ".join(entry.error_message.split()) or "(no message)"
    if len(message) > PREVIEW_CHARS:
        message = message[:PREVIEW_CHARS] + "..."
    # "Rejected" is the class of every contract violation: it says nothing the reason does not.
    if entry.error_class and entry.error_class != "Rejected" and not message.startswith(entry.error_class):
        message = f"{entry.error_class}: {message}"
    return "  ".join(first) + f"\n    {message}  |  value {entry.value_preview.human()}"


# -- reading ----------------------------------------------------------------------------------------


def read_dlq(
    settings: Settings,
    stream: str,
    max_records: int | None = None,
    timeout_s: float = 30.0,
) -> list[DlqEntry]:
    """Every dead letter in ``S.dlq`` from the beginning to its end when the read started, oldest first.

    Nothing is committed and no group is joined, so reading never changes what
    a replay will send.

    Parameters
    ----------
    settings
        Where Kafka is.
    stream
        The stream ``S`` whose ``S.dlq`` is read.
    max_records
        Stop after this many records (the first ones fetched, partition by
        partition); ``None`` reads to the end.
    timeout_s
        Upper bound on the whole read: what was read by then is returned.

    Returns
    -------
    list[DlqEntry]
        Sorted by the time they were dead-lettered, then partition and offset.

    Raises
    ------
    DlqError
        If ``S.dlq`` does not exist.
    """
    topic = StreamTopics(stream).dlq
    entries: list[DlqEntry] = []
    with _dlq_reader(settings, topic, "dlq-read", None, timeout_s) as (batches, _state):
        for batch in batches:
            if max_records is not None:
                batch = batch[: max_records - len(entries)]
            entries.extend(DlqEntry.from_message(m) for m in batch)
            if max_records is not None and len(entries) >= max_records:
                break
    entries.sort(key=lambda e: (e.when_ms if e.when_ms is not None else 0, e.partition, e.offset))
    return entries


# -- replay -----------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What ``replay_dlq`` did (or, in a dry run, would do).

    ``replayed_by_topic`` counts replayed records per destination (their source
    topic). Skipped records are counted by their source topic when that topic
    is not replayable, else by their reason when ``only_reasons`` left them out.
    ``committed`` maps each DLQ partition to the offset the replay group now
    starts from (empty in a dry run); ``ranges`` to the first and last offset
    read from it.
    """

    stream: str
    dlq_topic: str
    group: str
    dry_run: bool
    scanned: int = 0
    replayed: int = 0
    replayed_by_topic: dict[str, int] = field(default_factory=dict)
    skipped_by_topic: dict[str, int] = field(default_factory=dict)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    caught_up: bool = False
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_topic.values()) + sum(self.skipped_by_reason.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "dlq_topic": self.dlq_topic,
            "group": self.group,
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "replayed": self.replayed,
            "replayed_by_topic": self.replayed_by_topic,
            "skipped": self.skipped,
            "skipped_by_topic": self.skipped_by_topic,
            "skipped_by_reason": self.skipped_by_reason,
            "committed": {str(p): o for p, o in sorted(self.committed.items())},
            "ranges": {str(p): {"first_offset": a, "last_offset": b} for p, (a, b) in sorted(self.ranges.items())},
            "caught_up": self.caught_up,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict())


def format_replay(result: ReplayResult) -> str:
    """The human summary of a replay, a few lines.

    Examples
    --------
    >>> r = ReplayResult("s", "s.dlq", "eddy-dlq-replay-s", False, 3, 2, {"s.events": 2}, {"x.events": 1})
    >>> print(format_replay(r))
    replayed 2 of 3 new records in s.dlq: s.events 2
    skipped 1 from a source that is not replayed: x.events 1
    stopped before the end of s.dlq (timeout): run again to continue
    """
    verb = "would replay" if result.dry_run else "replayed"
    lines = [f"{verb} {result.replayed} of {result.scanned} new records in {result.dlq_topic}"]
    if result.replayed_by_topic:
        lines[0] += ": " + _counts(result.replayed_by_topic)
    if result.skipped_by_topic:
        n = sum(result.skipped_by_topic.values())
        lines.append(f"skipped {n} from a source that is not replayed: {_counts(result.skipped_by_topic)}")
    if result.skipped_by_reason:
        n = sum(result.skipped_by_reason.values())
        lines.append(f"skipped {n} with another reason: {_counts(result.skipped_by_reason)}")
    if result.dry_run:
        lines.append("dry run: nothing sent, nothing committed")
    if not result.caught_up:
        lines.append(f"stopped before the end of {result.dlq_topic} (timeout): run again to continue")
    return "\n".join(lines)


def replay_dlq(
    settings: Settings,
    stream: str,
    only_reasons: Collection[str] | None = None,
    dry_run: bool = False,
    *,
    source_topics: Collection[str] | None = None,
    timeout_s: float = 120.0,
) -> ReplayResult:
    """Send the dead letters of ``S.dlq`` that arrived since the last replay back to their source topic.

    Each replayed record carries the original key, value bytes and headers,
    plus ``eddy.replayed_from`` = ``"S.dlq:partition:offset"`` (replacing the
    one of an earlier replay). Its timestamp is the original record's.

    The replay group's offsets move past every record read, skipped ones
    included, and only after the replayed records were acknowledged. So a
    second run sends only dead letters that arrived since, and a record left
    out by ``only_reasons`` is not offered again by a later run: read it with
    ``read_dlq``. A failure before the commit means the next run sends that
    part again (at-least-once; eddy de-duplicates by event id downstream).

    Parameters
    ----------
    settings
        Where Kafka is.
    stream
        The stream ``S``.
    only_reasons
        Replay only records with these reasons; a name also matches the reasons
        it prefixes before a colon (``"contract"`` matches ``"contract:max"``).
        ``None`` replays every reason.
    dry_run
        Count what would be replayed, without producing or committing.
    source_topics
        The source topics whose records are replayed. By default ``S.events``
        and ``S.raw``, so records re-enter validation; records from other
        topics (``S.feedback``, another stream, a file rejected by ``eddy
        produce``) are skipped.
    timeout_s
        Upper bound on reading ``S.dlq`` (up to its end when the replay
        started); the progress made is committed and ``caught_up`` is false
        when it runs out.

    Returns
    -------
    ReplayResult
        Counts per destination topic and per skip cause, and the new offsets.

    Raises
    ------
    DlqError
        If ``S.dlq`` does not exist or the broker refuses the commit.
    eddy.kafka.producer.DeliveryError
        If replayed records were not acknowledged; nothing of that part is committed.
    """
    topics = StreamTopics(stream)
    allowed = set(source_topics) if source_topics is not None else {topics.events, f"{stream}.raw"}
    reasons = None if only_reasons is None else set(only_reasons)
    group = replay_group(stream)
    result = ReplayResult(stream=stream, dlq_topic=topics.dlq, group=group, dry_run=dry_run)
    # The group's consumer only commits (and reads the committed offsets): the history reader reads.
    consumer = Consumer(consumer_config(settings, group))
    producer = None if dry_run else ConfirmedProducer(producer_config(settings))
    try:
        existing = set(consumer.list_topics(timeout=10).topics)
        positions = _committed_positions(consumer, topics.dlq)
        pending: dict[int, int] = {}
        since_commit = 0
        with _dlq_reader(settings, topics.dlq, "dlq-replay", positions, timeout_s) as (batches, state):
            for batch in batches:
                for msg in batch:
                    entry = DlqEntry.from_message(msg)
                    result.scanned += 1
                    pending[entry.partition] = entry.offset + 1
                    first = result.ranges.get(entry.partition, (entry.offset, entry.offset))[0]
                    result.ranges[entry.partition] = (first, entry.offset)
                    destination = entry.source_topic
                    if destination is None or destination not in allowed:
                        _bump(result.skipped_by_topic, destination or "(no source topic)")
                        continue
                    # A retention gap's dead letter has no record to send back, whatever reasons were asked for.
                    unwanted = reasons is not None and not _reason_matches(entry.reason, reasons)
                    if entry.reason in NOT_REPLAYABLE or unwanted:
                        _bump(result.skipped_by_reason, entry.reason or "(no reason)")
                        continue
                    _bump(result.replayed_by_topic, destination)
                    result.replayed += 1
                    if producer is None:
                        continue
                    if destination not in existing:
                        # A broker that auto-creates topics would pick its own partition count: create it ours.
                        ensure_topics(settings, [destination])
                        existing.add(destination)
                    producer.produce(destination, entry.value, entry.key, _replay_headers(entry), entry.timestamp_ms)
                since_commit += len(batch)
                if producer is not None:
                    producer.poll(0)
                    if since_commit >= COMMIT_EVERY:
                        _confirm_and_commit(producer, consumer, topics.dlq, pending, result.committed)
                        since_commit = 0
            if producer is not None:
                _confirm_and_commit(producer, consumer, topics.dlq, pending, result.committed)
            result.caught_up = state.caught_up
    finally:
        consumer.close()
    return result


def audited_replay(
    settings: Settings,
    stream: str,
    record: AuditRecorder,
    only_reasons: Collection[str] | None = None,
    **options: Any,
) -> ReplayResult:
    """:func:`replay_dlq`, recorded in the audit log before it sends anything and with its outcome.

    The first entry (``dlq_replay_started``: the DLQ, the replay group, the reasons) comes
    first so that a caller the audit log refuses (no operator key) replays nothing, and a
    replay that dies half-way is still on record. Then ``dlq_replayed`` with the counts and
    the offset ranges read, or ``dlq_replay_failed`` with the error.

    Parameters
    ----------
    settings, stream, only_reasons, options
        As for :func:`replay_dlq` (not ``dry_run``: a dry run changes nothing and needs no record).
    record
        Writes ``(action, details)`` to the audit log, raising :class:`AuditError` if it cannot.

    Raises
    ------
    AuditError
        If the first entry was refused (nothing was replayed), or the last one (the replay was done:
        the message says what it did).
    DlqError, eddy.kafka.producer.DeliveryError
        As :func:`replay_dlq` (recorded as ``dlq_replay_failed`` when the audit log takes it).
    """
    topics = StreamTopics(stream)
    reasons = sorted(only_reasons) if only_reasons is not None else None
    try:
        record(REPLAY_STARTED, {"dlq_topic": topics.dlq, "group": replay_group(stream), "reasons": reasons})
    except AuditError as exc:
        raise AuditError(f"nothing replayed: the audit log must record a replay first: {exc}") from exc
    try:
        result = replay_dlq(settings, stream, only_reasons, **options)
    except Exception as exc:
        # The failure itself is best recorded; the replay's error is what the caller must see.
        with contextlib.suppress(AuditError):
            record(REPLAY_FAILED, {"dlq_topic": topics.dlq, "error": f"{type(exc).__name__}: {exc}"})
        raise
    try:
        record(REPLAYED, result.as_dict())
    except AuditError as exc:
        done = format_replay(result).splitlines()[0]
        raise AuditError(f"{done}, but the audit log did not record it: {exc}") from exc
    return result


def _replay_headers(entry: DlqEntry) -> Headers:
    headers = [(k, v) for k, v in entry.headers if k != REPLAYED_FROM_HEADER]
    headers.append((REPLAYED_FROM_HEADER, entry.position.encode("utf-8")))
    # Null header values are passed through as they came; the client accepts them though Headers says bytes.
    return cast(Headers, headers)


def _confirm_and_commit(
    producer: ConfirmedProducer,
    consumer: Consumer,
    topic: str,
    pending: dict[int, int],
    committed: dict[int, int],
) -> None:
    """Commit the DLQ offsets read so far, once everything replayed from them is acknowledged."""
    producer.confirm()
    if not pending:
        return
    offsets = [TopicPartition(topic, p, o) for p, o in sorted(pending.items())]
    for tp in consumer.commit(offsets=offsets, asynchronous=False) or []:
        if tp.error is not None:
            raise DlqError(f"the broker refused the replay offset of {topic}:{tp.partition}: {tp.error}")
    committed.update(pending)
    pending.clear()


def _committed_positions(consumer: Consumer, topic: str) -> dict[Key, int]:
    """Where the replay group stopped, per partition (left out where it never committed: the beginning)."""
    found = committed_offsets(consumer, [TopicPartition(topic, p) for p in _partitions(consumer, topic)])
    out = {}
    for tp in found:
        if tp.error is not None:
            raise DlqError(f"cannot read the replay offsets of {topic}:{tp.partition}: {tp.error}")
        if tp.offset >= 0:
            out[(topic, tp.partition)] = tp.offset
    return out


def _reason_matches(reason: str, wanted: set[str]) -> bool:
    return reason in wanted or any(reason.startswith(w + ":") for w in wanted)


# -- consuming --------------------------------------------------------------------------------------


@dataclass
class _ReadState:
    caught_up: bool = False


@contextmanager
def _dlq_reader(
    settings: Settings, topic: str, purpose: str, positions: dict[Key, int] | None, timeout_s: float
) -> Iterator[tuple[Iterator[list[Message]], _ReadState]]:
    """The batches of ``topic`` from ``positions`` to its end when the read started, and how far they got.

    ``caught_up`` is set once the batches reached every end (a caller that stops early sets nothing);
    a timeout ends the batches with it unset.
    """
    try:
        reader = HistoryReader(settings, [topic], positions=positions, purpose=purpose, timeout_s=timeout_s)
    except MissingTopic as exc:
        raise DlqError(
            f"no topic {topic!r}: nothing was dead-lettered yet, or the stream's topics were never created"
        ) from exc
    except HistoryError as exc:
        raise DlqError(str(exc)) from exc
    state = _ReadState()

    def batches() -> Iterator[list[Message]]:
        try:
            yield from reader.batches()
            state.caught_up = True
        except ReadTimeout:
            return

    with reader:
        yield batches(), state


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    # Listing all topics, not just this one: asking for one topic by name may auto-create it on some brokers.
    metadata = consumer.list_topics(timeout=10)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise DlqError(f"no topic {topic!r}: nothing was dead-lettered yet, or the stream's topics were never created")
    return sorted(found.partitions)


# -- small helpers ----------------------------------------------------------------------------------


def _printable_text(value: bytes) -> str | None:
    """``value`` as text if it is UTF-8 without control characters (Avro bytes often decode, but are not text)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text):
        return None
    return text


def _bytes_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    text = _printable_text(value)
    return text if text is not None else "base64:" + base64.b64encode(value).decode("ascii")


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _parse_violations(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    try:
        parsed = json.loads(text)
    except ValueError:
        # A writer other than eddy may put anything here: keep it visible rather than drop it.
        return [{"unparsed": text}]
    if not isinstance(parsed, list):
        return [{"unparsed": text}]
    return [v if isinstance(v, dict) else {"value": v} for v in parsed]


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

"""Versioned datasets: a stream's labeled examples between two bounds, as a file and a manifest that pins it down.

``eddy dataset export S --output DIR`` reads ``S.labeled`` and writes
``DIR/data.parquet`` (or ``data.csv``) and ``DIR/manifest.json``.

Which rows
    ``S.labeled`` holds one example per event *and model version* (every
    non-archived version predicts every event), so a dataset must choose:

    - ``served`` (the default): the answer each event was given, once per
      event. That is the champion's example, or the challenger's on its canary
      share (the record carries no alias, so the two cannot be told apart from
      the topic alone; the manifest counts rows per version). A null ``served``
      comes from before the field existed, when only the champion was labeled,
      so it counts as served, as retraining counts it.
    - ``model`` (``--model NAME@N``): every example of one version, once per event.
    - ``all`` (``--all-models``): every version's example, once per event and version.

    Duplicates (a record written twice) keep the first one read: every record of
    an event is in one partition, so "first" is the lowest offset.

Bounds
    ``--from`` is inclusive and ``--until`` exclusive, so consecutive exports
    tile a topic without overlap. An integer below ``10**11`` is an offset (in
    every partition), a larger one epoch milliseconds, anything else ISO 8601
    (naive means UTC). A time bound is exact: each record is kept or dropped by
    its own timestamp, which learning sets to the event's time, so the whole
    topic is read (the broker's time index is not trusted: the embedded one
    answers time lookups wrong).

Where reading stops
    Each partition is read up to its end as it was when the export started
    (``eddy.history.reader``): records written after that are not part of the
    export, and the manifest gives the exact offsets read.

Reproducible bytes
    Rows are sorted by (event_time_ms, event_id, model, version) and written
    with fixed Parquet options and no metadata that depends on when or how the
    export ran, so the same rows give a byte-identical ``data.parquet`` (with
    the same pyarrow version, which the manifest records).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from eddy.core.files import write_atomically
from eddy.core.settings import Settings
from eddy.core.times import iso_utc
from eddy.history.bounds import Bound, BoundError, parse_bound
from eddy.history.reader import HistoryError, HistoryReader, MissingTopic, ReadTimeout
from eddy.ml.roles import VersionKey

MANIFEST_NAME = "manifest.json"
DATA_NAMES = {"parquet": "data.parquet", "csv": "data.csv"}
MANIFEST_VERSION = 1

# Parquet options fixed here rather than left to pyarrow's defaults, so that a pyarrow upgrade changing a
# default shows up as a code change; none of them writes anything time-dependent.
ROW_GROUP_SIZE = 64 * 1024
PARQUET_OPTIONS: dict[str, Any] = {
    "row_group_size": ROW_GROUP_SIZE,
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "write_page_index": False,
    "store_schema": True,
}

# The columns every dataset has, before the features (label, prediction and the model after them).
LEADING_COLUMNS = ("event_id", "event_time_ms", "label_time_ms")
TRAILING_COLUMNS = ("label", "prediction", "model_name", "model_version", "served", "segment")
FEATURE_PREFIX = "feature_"
_FEATURE_TYPES = {"double": pa.float64(), "long": pa.int64(), "string": pa.string(), "boolean": pa.bool_()}
# The Python types of the values an Arrow type takes as they are (bool is an int to Python, not to us).
_FITS: dict[pa.DataType, set[type]] = {
    pa.float64(): {int, float},
    pa.int64(): {int},
    pa.string(): {str},
    pa.bool_(): {bool},
}


class DatasetError(Exception):
    """A user-facing problem with an export (bad bound, missing topic, a read that timed out)."""


# -- bounds ---------------------------------------------------------------------------------------------


def bound_doc(bound: Bound) -> dict[str, Any]:
    """A bound as the manifest records it (a time's kind is ``timestamp`` there, with its ISO form).

    >>> bound_doc(parse_bound("1700000000000"))
    {'given': '1700000000000', 'kind': 'timestamp', 'value': 1700000000000, 'iso': '2023-11-14T22:13:20.000Z'}
    """
    doc: dict[str, Any] = {"given": bound.given, "kind": "offset" if bound.kind == "offset" else "timestamp"}
    doc["value"] = bound.value
    if bound.kind == "time":
        doc["iso"] = iso_utc(bound.value)
    return doc


def _parse(text: str | None, option: str) -> Bound | None:
    if not text:
        return None
    try:
        return parse_bound(text, option)
    except BoundError as exc:
        raise DatasetError(str(exc)) from exc


@dataclass(frozen=True)
class Bounds:
    """``[start, end)``: offsets limit what is read, times filter each record read."""

    start: Bound | None = None
    end: Bound | None = None

    def __post_init__(self) -> None:
        if self.start and self.end and self.start.kind == self.end.kind and self.start.value >= self.end.value:
            raise DatasetError(f"--from {self.start.given} is not before --until {self.end.given} (until is exclusive)")

    @classmethod
    def parse(cls, start: str | None, end: str | None) -> Bounds:
        return cls(_parse(start, "--from"), _parse(end, "--until"))

    def _value(self, bound: Bound | None, kind: str) -> int | None:
        return bound.value if bound is not None and bound.kind == kind else None

    @property
    def from_offset(self) -> int | None:
        return self._value(self.start, "offset")

    @property
    def until_offset(self) -> int | None:
        return self._value(self.end, "offset")

    @property
    def from_ms(self) -> int | None:
        return self._value(self.start, "time")

    @property
    def until_ms(self) -> int | None:
        return self._value(self.end, "time")

    def admits(self, offset: int, timestamp_ms: int) -> bool:
        """Whether a record at ``offset`` with ``timestamp_ms`` is inside the bounds."""
        return (
            (self.from_offset is None or offset >= self.from_offset)
            and (self.until_offset is None or offset < self.until_offset)
            and (self.from_ms is None or timestamp_ms >= self.from_ms)
            and (self.until_ms is None or timestamp_ms < self.until_ms)
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "given": {"from": self.start.given if self.start else None, "until": self.end.given if self.end else None},
            "resolved": {
                "from": bound_doc(self.start) if self.start else None,
                "until": bound_doc(self.end) if self.end else None,
            },
            "inclusive": {"from": True, "until": False},
        }


# -- which rows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which of an event's examples (one per model version) a dataset keeps; see the module's docstring."""

    mode: Literal["served", "model", "all"] = "served"
    model: VersionKey | None = None

    def __post_init__(self) -> None:
        if (self.mode == "model") != (self.model is not None):
            raise DatasetError("a model selection names exactly one version (--model NAME@N)")

    @classmethod
    def of(cls, model: str | None = None, all_models: bool = False) -> Selection:
        if model and all_models:
            raise DatasetError("--model and --all-models exclude each other")
        if all_models:
            return cls("all")
        if model:
            try:
                return cls("model", VersionKey.parse(model))
            except ValueError as exc:
                raise DatasetError(str(exc)) from exc
        return cls()

    def keeps(self, value: dict[str, Any]) -> bool:
        if self.mode == "served":
            return value.get("served") is not False
        if self.mode == "model":
            assert self.model is not None
            return (value["model_name"], value["model_version"]) == (self.model.name, self.model.version)
        return True

    def identity(self, value: dict[str, Any]) -> tuple[Any, ...]:
        """What makes a row unique in this selection: the event, and in ``all`` also the version."""
        if self.mode == "all":
            return value["event_id"], value["model_name"], value["model_version"]
        return (value["event_id"],)

    def to_doc(self) -> dict[str, Any]:
        return {"mode": self.mode, "model": str(self.model) if self.model else None}


@dataclass(frozen=True)
class Example:
    """One decoded ``S.labeled`` record and where it was read."""

    partition: int
    offset: int
    timestamp_ms: int
    value: dict[str, Any]


@dataclass
class SelectionStats:
    """How the records read became the rows written."""

    decoded: int = 0
    in_bounds: int = 0
    selected: int = 0
    duplicates: int = 0
    rows: int = 0
    rows_by_model: dict[str, int] = field(default_factory=dict)


def select_examples(
    examples: Iterable[Example], selection: Selection, bounds: Bounds
) -> tuple[list[Example], SelectionStats]:
    """The examples inside ``bounds`` that ``selection`` keeps, once each, in dataset order.

    Examples
    --------
    >>> def ex(offset, event, version, served):
    ...     value = {"event_id": event, "event_time_ms": 10 - offset, "model_name": "m",
    ...              "model_version": version, "served": served}
    ...     return Example(0, offset, 10 - offset, value)
    >>> rows, stats = select_examples(
    ...     [ex(0, "a", 1, True), ex(1, "a", 2, False), ex(2, "b", 1, True), ex(3, "b", 1, True)],
    ...     Selection(), Bounds())
    >>> [(r.value["event_id"], r.offset) for r in rows], stats.duplicates
    ([('b', 2), ('a', 0)], 1)
    """
    stats = SelectionStats()
    kept: dict[tuple[Any, ...], Example] = {}
    for example in sorted(examples, key=lambda e: (e.partition, e.offset)):
        stats.decoded += 1
        if not bounds.admits(example.offset, example.timestamp_ms):
            continue
        stats.in_bounds += 1
        if not selection.keeps(example.value):
            continue
        stats.selected += 1
        identity = selection.identity(example.value)
        if identity in kept:
            stats.duplicates += 1
            continue
        kept[identity] = example
    rows = sorted(kept.values(), key=_row_order)
    stats.rows = len(rows)
    counts = Counter(f"{r.value['model_name']}@{r.value['model_version']}" for r in rows)
    stats.rows_by_model = dict(sorted(counts.items()))
    return rows, stats


def _row_order(example: Example) -> tuple[Any, ...]:
    v = example.value
    return v["event_time_ms"], v["event_id"], v["model_name"], v["model_version"]


# -- the table ------------------------------------------------------------------------------------------


def feature_columns(examples: Sequence[Example], feature_order: Sequence[str] = ()) -> list[str]:
    """The features found in ``examples``: those of ``feature_order`` (the contract's) first, the rest sorted.

    >>> feature_columns([Example(0, 0, 0, {"features": {"z": 1, "x0": 2.0, "x1": 3.0}})], ["x1", "x0", "gone"])
    ['x1', 'x0', 'z']
    """
    found = {name for e in examples for name in e.value.get("features") or {}}
    known = [name for name in feature_order if name in found]
    return known + sorted(found - set(known))


def column_name(feature: str) -> str:
    """A feature's column: its own name, unless a fixed column has it (then ``feature_`` + name).

    >>> column_name("x0"), column_name("label")
    ('x0', 'feature_label')
    """
    fixed = {*LEADING_COLUMNS, *TRAILING_COLUMNS}
    return f"{FEATURE_PREFIX}{feature}" if feature in fixed or feature.startswith(FEATURE_PREFIX) else feature


def to_table(
    examples: Sequence[Example], feature_order: Sequence[str] = (), feature_types: dict[str, str] | None = None
) -> pa.Table:
    """One row per example: ids and times, every feature as its own column, label, prediction, model.

    A feature's type is the contract's (``feature_types``: name -> double, long, string, boolean) when its
    values fit it, else inferred from the values (see :func:`arrow_column`). ``segment`` is a column only
    when some example has one.
    """
    types = feature_types or {}
    values = [e.value for e in examples]
    columns: dict[str, pa.Array] = {
        "event_id": pa.array([v["event_id"] for v in values], pa.string()),
        "event_time_ms": pa.array([v["event_time_ms"] for v in values], pa.int64()),
        "label_time_ms": pa.array([v.get("label_time_ms") for v in values], pa.int64()),
    }
    for feature in feature_columns(examples, feature_order):
        column = [(v.get("features") or {}).get(feature) for v in values]
        columns[column_name(feature)] = arrow_column(column, _FEATURE_TYPES.get(types.get(feature, "")))
    columns["label"] = arrow_column([v.get("label") for v in values])
    columns["prediction"] = arrow_column([v.get("prediction") for v in values])
    columns["model_name"] = pa.array([v["model_name"] for v in values], pa.string())
    columns["model_version"] = pa.array([v["model_version"] for v in values], pa.int32())
    columns["served"] = pa.array([v.get("served") for v in values], pa.bool_())
    if any(v.get("segment") is not None for v in values):
        columns["segment"] = pa.array([v.get("segment") for v in values], pa.string())
    return pa.table(columns)


def arrow_column(values: Sequence[Any], preferred: pa.DataType | None = None) -> pa.Array:
    """``values`` as an Arrow array of ``preferred`` if they fit it, else of the narrowest type that holds them.

    All booleans: bool; all integers: int64; integers and floats: float64; anything else (or nothing but
    nulls): strings, with non-strings written as JSON so ``true`` and ``"true"`` stay apart.

    >>> arrow_column([1, 2.5, None]).type, arrow_column([True, None]).type, arrow_column([1, "a"]).to_pylist()
    (DataType(double), DataType(bool), ['1', 'a'])
    """
    kinds = {type(v) for v in values if v is not None}
    # A value of another type (pyarrow would silently turn True into 1.0): infer instead, rather than lose it.
    if preferred is not None and kinds <= _FITS.get(preferred, set()):
        return pa.array(values, preferred)
    if kinds and kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds and kinds <= {int}:
        return pa.array(values, pa.int64())
    if kinds and kinds <= {int, float}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string())


def table_bytes(table: pa.Table, fmt: str = "parquet") -> bytes:
    """The file's bytes: the same table always gives the same bytes (with one pyarrow version)."""
    sink = pa.BufferOutputStream()
    if fmt == "parquet":
        # No schema metadata: the bytes depend on the rows alone, not on how the table was built.
        pq.write_table(table.replace_schema_metadata(None), sink, **PARQUET_OPTIONS)
    elif fmt == "csv":
        pa_csv.write_csv(table, sink)
    else:
        raise DatasetError(f"unknown format {fmt!r}; one of {', '.join(DATA_NAMES)}")
    return bytes(sink.getvalue().to_pybytes())


# -- reading S.labeled ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRecord:
    """One record as read: its place, its own timestamp (None when the broker has none) and its value bytes."""

    partition: int
    offset: int
    timestamp_ms: int | None
    value: bytes | None


@dataclass
class PartitionRange:
    """What was read of one partition: ``[start, end)`` asked for, ``first``..``last`` actually delivered."""

    partition: int
    start: int
    end: int | None = None
    first_offset: int | None = None
    last_offset: int | None = None
    records: int = 0

    def saw(self, offset: int) -> None:
        self.records += 1
        self.first_offset = offset if self.first_offset is None else min(self.first_offset, offset)
        self.last_offset = offset if self.last_offset is None else max(self.last_offset, offset)

    def to_doc(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "start": self.start,
            "end": self.end,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "records": self.records,
        }


def read_range(
    settings: Settings, topic: str, bounds: Bounds, timeout_s: float = 120.0
) -> tuple[list[RawRecord], list[PartitionRange]]:
    """Every record of ``topic`` inside the offset bounds, up to each partition's end when the read started.

    No consumer group is joined and nothing is committed. Time bounds are not applied here: the caller
    filters by each record's own timestamp (:meth:`Bounds.admits`).

    Raises
    ------
    DatasetError
        If the topic does not exist, or not every partition was read to its end within ``timeout_s``.
    """
    try:
        reader = HistoryReader(
            settings, [topic], start=bounds.start, until=bounds.end, purpose="dataset", timeout_s=timeout_s
        )
    except MissingTopic as exc:
        raise DatasetError(
            f"no topic {topic!r}: the stream's topics were never created, or nothing was labeled"
        ) from exc
    except HistoryError as exc:
        raise DatasetError(str(exc)) from exc
    first = bounds.from_offset
    ranges = {s.partition: PartitionRange(s.partition, first or 0) for s in reader.spans}
    records: list[RawRecord] = []
    try:
        with reader:
            for batch in reader.batches():
                for msg in batch:
                    partition, offset = msg.partition() or 0, msg.offset() or 0
                    ranges[partition].saw(offset)
                    ts_type, ts = msg.timestamp()
                    records.append(RawRecord(partition, offset, ts if ts_type and ts >= 0 else None, msg.value()))
    except ReadTimeout as exc:
        where = ", ".join(f"{s.partition} at {ranges[s.partition].last_offset} of {s.end}" for s in exc.pending)
        raise DatasetError(f"timed out after {timeout_s:.0f} s reading {topic} (partitions {where})") from exc
    for span in reader.spans:
        ranges[span.partition].end = max(ranges[span.partition].start, span.end)
    return records, [ranges[p] for p in sorted(ranges)]


def schema_id_of(value: bytes | None) -> int | None:
    """The schema id in a Confluent wire-format header (None when the bytes have none).

    >>> schema_id_of(bytes([0, 0, 0, 1, 7, 42])), schema_id_of(b"{}")
    (263, None)
    """
    if not value or len(value) < 5 or value[0] != 0:
        return None
    return int.from_bytes(value[1:5], "big")


def decode_records(records: Sequence[RawRecord], serde: Any) -> tuple[list[Example], list[dict[str, Any]]]:
    """The records ``serde`` decodes, as :class:`Example` s, and where each one that does not decode is.

    A record without a broker timestamp takes its event time, which is what learning would have set.
    """
    examples: list[Example] = []
    undecodable: list[dict[str, Any]] = []
    decoded = serde.decode_many([r.value for r in records]) if records else []
    for record, value in zip(records, decoded, strict=True):
        if isinstance(value, Exception):
            undecodable.append({"partition": record.partition, "offset": record.offset, "error": str(value)})
            continue
        ts = record.timestamp_ms if record.timestamp_ms is not None else int(value["event_time_ms"])
        examples.append(Example(record.partition, record.offset, ts, value))
    return examples, undecodable


# -- the manifest and the files -------------------------------------------------------------------------


def build_manifest(
    *,
    stream: str,
    topic: str,
    bounds: Bounds,
    selection: Selection,
    partitions: Sequence[PartitionRange],
    schema_ids: Iterable[int],
    stats: SelectionStats,
    undecodable: Sequence[dict[str, Any]],
    table: pa.Table,
    fmt: str,
    sha256: str,
    code_version: str,
    created_at_ms: int,
) -> dict[str, Any]:
    """Everything needed to know what a dataset holds, and to check a copy of it."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "stream": stream,
        "topic": topic,
        "selection": selection.to_doc(),
        "bounds": bounds.to_doc(),
        "partitions": [p.to_doc() for p in partitions],
        "schema_ids": sorted(set(schema_ids)),
        "records_read": sum(p.records for p in partitions),
        "undecodable": {"count": len(undecodable), "first": list(undecodable[:10])},
        "counts": {
            "decoded": stats.decoded,
            "in_bounds": stats.in_bounds,
            "selected": stats.selected,
            "duplicates_dropped": stats.duplicates,
        },
        "rows": table.num_rows,
        "rows_by_model": stats.rows_by_model,
        "columns": [{"name": f.name, "dtype": str(f.type)} for f in table.schema],
        "file": {"name": DATA_NAMES[fmt], "format": fmt, "sha256": sha256},
        "code_version": code_version,
        "pyarrow_version": pa.__version__,
        "created_at": iso_utc(created_at_ms),
        "created_at_ms": created_at_ms,
    }


def data_range(manifest: dict[str, Any]) -> dict[str, Any]:
    """The part of a manifest that says which data it is: what an experiment's ``data`` should hold.

    Two datasets with equal ranges were read from the same offsets with the same bounds and selection.
    """
    keys = ("stream", "topic", "selection", "bounds", "partitions", "rows", "schema_ids")
    return {**{k: manifest[k] for k in keys}, "sha256": manifest["file"]["sha256"]}


def write_dataset(out_dir: Path, table: pa.Table, fmt: str, manifest_of: Any) -> dict[str, Any]:
    """Write the data file, then the manifest ``manifest_of(sha256)`` builds; returns the manifest.

    The manifest goes last, so a manifest always describes the data file beside it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    data = table_bytes(table, fmt)
    sha256 = hashlib.sha256(data).hexdigest()
    write_atomically(out_dir / DATA_NAMES[fmt], data)
    manifest: dict[str, Any] = manifest_of(sha256)
    write_atomically(out_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def export_dataset(
    settings: Settings,
    serdes: Any,
    stream: str,
    out_dir: Path,
    *,
    bounds: Bounds | None = None,
    selection: Selection | None = None,
    fmt: str = "parquet",
    feature_order: Sequence[str] = (),
    feature_types: dict[str, str] | None = None,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Export ``stream``'s labeled examples to ``out_dir``; returns the manifest written beside the data.

    Parameters
    ----------
    settings
        Where Kafka is.
    serdes
        A :class:`eddy.avro.serde.SerdeRegistry` knowing the stream (decodes ``S.labeled``).
    stream
        The stream ``S``; ``S.labeled`` is read.
    out_dir
        Created if missing; ``data.parquet`` (or ``data.csv``) and ``manifest.json`` are replaced.
    bounds, selection
        Which records and which of an event's examples (default: everything, the served examples).
    fmt
        ``parquet`` or ``csv``.
    feature_order, feature_types
        The contract's features, for column order and types (found features it does not name follow).
    timeout_s
        Upper bound on reading.

    Raises
    ------
    DatasetError
        For a missing topic, a read that timed out or an unknown format.
    """
    from eddy.core.topics import StreamTopics
    from eddy.runtime.service import code_version

    if fmt not in DATA_NAMES:
        raise DatasetError(f"unknown format {fmt!r}; one of {', '.join(DATA_NAMES)}")
    bounds, selection = bounds or Bounds(), selection or Selection()
    topic = StreamTopics(stream).labeled
    records, partitions = read_range(settings, topic, bounds, timeout_s)
    examples, undecodable = decode_records(records, serdes.for_topic(topic))
    rows, stats = select_examples(examples, selection, bounds)
    table = to_table(rows, feature_order, feature_types)
    schema_ids = {i for i in (schema_id_of(r.value) for r in records) if i is not None}
    version = code_version()

    def manifest_of(sha256: str) -> dict[str, Any]:
        return build_manifest(
            stream=stream,
            topic=topic,
            bounds=bounds,
            selection=selection,
            partitions=partitions,
            schema_ids=schema_ids,
            stats=stats,
            undecodable=undecodable,
            table=table,
            fmt=fmt,
            sha256=sha256,
            code_version=version,
            created_at_ms=int(time.time() * 1000),
        )

    return write_dataset(out_dir, table, fmt, manifest_of)

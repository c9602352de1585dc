"""The pure parts of ``eddy dataset export``: bounds, which rows, their order, the table, manifest and bytes."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from eddy.avro.serde import SerdeError
from eddy.history.bounds import Bound
from eddy.history.dataset import (
    Bounds,
    DatasetError,
    Example,
    PartitionRange,
    RawRecord,
    Selection,
    build_manifest,
    data_range,
    decode_records,
    schema_id_of,
    select_examples,
    table_bytes,
    to_table,
    write_dataset,
)

T0 = 1_700_000_000_000
FEATURES = {"x0": "double", "x1": "double", "x2": "double", "region": "string"}


def labeled(i: int, version: int = 1, served: bool | None = True, **overrides: Any) -> dict[str, Any]:
    """The labeled example of event ``e{i}`` by ``default@{version}``."""
    base = {
        "event_id": f"e{i}",
        "stream": "demo",
        "model_name": "default",
        "model_version": version,
        "model_learned": i,
        "prediction": i % 2 == 0,
        "probabilities": None,
        "features": {"x0": float(i), "x1": 1.0, "x2": 2.0, "region": "north"},
        "label": i % 3 == 0,
        "event_time_ms": T0 + i,
        "predicted_at_ms": T0 + i,
        "label_time_ms": T0 + 1000 + i,
        "joined_at_ms": T0 + 1000 + i,
        "segment": "north",
        "served": served,
    }
    return {**base, **overrides}


def example(i: int, offset: int | None = None, partition: int = 0, **kw: Any) -> Example:
    value = labeled(i, **kw)
    return Example(partition, i if offset is None else offset, value["event_time_ms"], value)


# -- bounds -----------------------------------------------------------------------------------------------


def test_bounds_parse_offsets_epoch_ms_and_iso() -> None:
    assert Bounds.parse("0", None).start == Bound("offset", 0)
    assert Bounds.parse(str(10**11 - 1), None).from_offset == 10**11 - 1
    assert Bounds.parse(None, str(10**11)).end == Bound("time", 10**11)
    assert Bounds.parse("2023-11-14T22:13:20Z", None).from_ms == T0
    assert Bounds.parse("2023-11-14T22:13:20.5", None).from_ms == T0 + 500  # naive is UTC
    assert Bounds.parse("2023-11-14", None).from_ms == T0 - (22 * 3600 + 13 * 60 + 20) * 1000
    for bad in ("-3", "yesterday", "12x"):
        with pytest.raises(DatasetError, match="--from"):
            Bounds.parse(bad, None)


def test_bounds_are_half_open_and_refuse_empty_ranges() -> None:
    bounds = Bounds.parse(str(T0 + 2), str(T0 + 5))
    assert [ts for ts in range(T0, T0 + 8) if bounds.admits(0, ts)] == [T0 + 2, T0 + 3, T0 + 4]
    by_offset = Bounds.parse("3", "5")
    assert [o for o in range(8) if by_offset.admits(o, 0)] == [3, 4]
    mixed = Bounds.parse("3", str(T0 + 5))  # an offset start and a time end both apply
    assert mixed.from_offset == 3 and mixed.until_ms == T0 + 5 and mixed.from_ms is None
    assert not mixed.admits(2, T0) and mixed.admits(3, T0 + 4) and not mixed.admits(3, T0 + 5)
    with pytest.raises(DatasetError, match="not before"):
        Bounds.parse("2024-01-02", "2024-01-01")
    with pytest.raises(DatasetError):
        Bounds.parse("5", "5")
    doc = Bounds.parse("2023-11-14T22:13:20Z", None).to_doc()
    assert doc["given"] == {"from": "2023-11-14T22:13:20Z", "until": None}
    assert doc["resolved"]["from"] == {
        "given": "2023-11-14T22:13:20Z",
        "kind": "timestamp",
        "value": T0,
        "iso": "2023-11-14T22:13:20.000Z",
    }


# -- which rows -------------------------------------------------------------------------------------------


def test_served_rows_once_per_event_in_time_order() -> None:
    examples = [
        example(3, offset=0),
        example(3, offset=1, version=2, served=False),  # a shadow's example of the same event
        example(1, offset=2),
        example(1, offset=3),  # written twice: the first one read counts
        example(2, offset=4, served=None),  # from before the served field: served
        example(4, offset=5, version=2, served=True),  # the challenger's answer on its canary share
    ]
    rows, stats = select_examples(examples, Selection(), Bounds())
    assert [(r.value["event_id"], r.offset) for r in rows] == [("e1", 2), ("e2", 4), ("e3", 0), ("e4", 5)]
    assert (stats.decoded, stats.in_bounds, stats.selected, stats.duplicates, stats.rows) == (6, 6, 5, 1, 4)
    assert stats.rows_by_model == {"default@1": 3, "default@2": 1}


def test_one_models_rows_or_every_models() -> None:
    examples = [example(i, offset=2 * i, version=1) for i in range(3)]
    examples += [example(i, offset=2 * i + 1, version=2, served=False) for i in range(3)]
    rows, _ = select_examples(examples, Selection.of(model="default@2"), Bounds())
    assert [(r.value["event_id"], r.value["model_version"]) for r in rows] == [("e0", 2), ("e1", 2), ("e2", 2)]
    rows, stats = select_examples([*examples, example(0, offset=99)], Selection.of(all_models=True), Bounds())
    assert [(r.value["event_id"], r.value["model_version"]) for r in rows] == [
        ("e0", 1),
        ("e0", 2),
        ("e1", 1),
        ("e1", 2),
        ("e2", 1),
        ("e2", 2),
    ]
    assert stats.duplicates == 1
    with pytest.raises(DatasetError):
        Selection.of(model="default@2", all_models=True)
    with pytest.raises(DatasetError):
        Selection.of(model="default")


def test_time_bounds_use_each_records_own_timestamp_and_order_does_not_matter() -> None:
    # Labels arrive out of event order: S.labeled is not sorted by time, so every record is checked.
    examples = [example(i, offset=n, partition=n % 2) for n, i in enumerate([5, 1, 9, 3, 7, 2])]
    bounds = Bounds.parse(str(T0 + 2), str(T0 + 7))
    rows, stats = select_examples(list(reversed(examples)), Selection(), bounds)
    assert [r.value["event_id"] for r in rows] == ["e2", "e3", "e5"]
    assert stats.in_bounds == 3


def test_rows_tie_on_time_are_ordered_by_event_id() -> None:
    examples = [example(i, offset=i, event_time_ms=T0) for i in (2, 10, 1)]
    rows, _ = select_examples(examples, Selection(), Bounds())
    assert [r.value["event_id"] for r in rows] == ["e1", "e10", "e2"]


# -- the table ---------------------------------------------------------------------------------------------


def test_table_has_a_column_per_feature_with_the_contracts_types() -> None:
    rows = [
        example(1),
        example(2, features={"x0": 3, "x1": None, "x2": 2.0, "region": "south", "extra": True}, segment=None),
    ]
    table = to_table(rows, ["x0", "x1", "x2", "region"], FEATURES)
    assert table.column_names == [
        "event_id",
        "event_time_ms",
        "label_time_ms",
        "x0",
        "x1",
        "x2",
        "region",
        "extra",
        "label",
        "prediction",
        "model_name",
        "model_version",
        "served",
        "segment",
    ]
    types = {f.name: str(f.type) for f in table.schema}
    assert types["x0"] == "double" and types["region"] == "string" and types["extra"] == "bool"
    assert types["label"] == "bool" and types["model_version"] == "int32"
    assert table.column("x0").to_pylist() == [1.0, 3.0] and table.column("x1").to_pylist() == [1.0, None]
    assert table.column("segment").to_pylist() == ["north", None]


def test_values_that_do_not_fit_the_contract_type_are_kept() -> None:
    rows = [example(1, features={"x0": True}), example(2, features={"x0": "high"})]
    table = to_table(rows, ["x0"], FEATURES)
    assert table.column("x0").to_pylist() == ["true", "high"]


def test_no_segment_column_without_segments_and_clashing_features_are_prefixed() -> None:
    table = to_table([example(1, segment=None, features={"label": 1.0})])
    assert "segment" not in table.column_names and "feature_label" in table.column_names


def test_parquet_bytes_are_deterministic() -> None:
    rows, _ = select_examples([example(i, offset=i) for i in range(2000)], Selection(), Bounds())
    first = table_bytes(to_table(rows, ["x0"], FEATURES))
    again = table_bytes(to_table(list(rows), ["x0"], FEATURES))
    assert first == again
    read = pq.read_table(io.BytesIO(first))
    assert read.num_rows == 2000 and read.column("event_id").to_pylist()[:2] == ["e0", "e1"]
    # Nothing of when or how it was written: only the Arrow schema is stored beside the rows.
    assert set(pq.ParquetFile(io.BytesIO(first)).metadata.metadata) == {b"ARROW:schema"}
    assert table_bytes(to_table(rows), "csv").splitlines()[0].startswith(b'"event_id","event_time_ms"')


# -- decoding and the manifest -----------------------------------------------------------------------------


class FakeSerde:
    def decode_many(self, values: list[bytes | None]) -> list[Any]:
        return [json.loads(v[5:]) if v and v[:1] == b"\0" else SerdeError("not wire format") for v in values]


def wire(schema_id: int, value: dict[str, Any]) -> bytes:
    return b"\0" + schema_id.to_bytes(4, "big") + json.dumps(value).encode()


def test_decode_records_keeps_places_and_reports_the_undecodable() -> None:
    records = [
        RawRecord(0, 0, T0 + 50, wire(7, labeled(1))),
        RawRecord(0, 1, None, wire(8, labeled(2))),  # no broker timestamp: the event's time
        RawRecord(1, 0, T0, b"junk"),
    ]
    examples, undecodable = decode_records(records, FakeSerde())
    assert [(e.partition, e.offset, e.timestamp_ms) for e in examples] == [(0, 0, T0 + 50), (0, 1, T0 + 2)]
    assert undecodable == [{"partition": 1, "offset": 0, "error": "not wire format"}]
    assert [schema_id_of(r.value) for r in records] == [7, 8, None]


def manifest_for(tmp_path: Path, rows: list[Example], sha: str = "") -> dict[str, Any]:
    partitions = [PartitionRange(0, 0, 10, 0, 9, 10), PartitionRange(1, 0, 0)]
    _, stats = select_examples(rows, Selection(), Bounds())
    return build_manifest(
        stream="demo",
        topic="demo.labeled",
        bounds=Bounds.parse(str(T0), None),
        selection=Selection(),
        partitions=partitions,
        schema_ids=[3, 1, 3],
        stats=stats,
        undecodable=[],
        table=to_table(rows),
        fmt="parquet",
        sha256=sha,
        code_version="abc123",
        created_at_ms=T0,
    )


def test_manifest_says_what_was_read_and_what_was_written(tmp_path: Path) -> None:
    rows = [example(i) for i in range(3)]
    manifest = manifest_for(tmp_path, rows, "f" * 64)
    assert manifest["partitions"] == [
        {"partition": 0, "start": 0, "end": 10, "first_offset": 0, "last_offset": 9, "records": 10},
        {"partition": 1, "start": 0, "end": 0, "first_offset": None, "last_offset": None, "records": 0},
    ]
    assert manifest["records_read"] == 10 and manifest["schema_ids"] == [1, 3] and manifest["rows"] == 3
    assert manifest["columns"][0] == {"name": "event_id", "dtype": "string"}
    assert manifest["file"] == {"name": "data.parquet", "format": "parquet", "sha256": "f" * 64}
    assert manifest["bounds"]["given"] == {"from": str(T0), "until": None}
    assert manifest["code_version"] == "abc123" and manifest["created_at"] == "2023-11-14T22:13:20.000Z"
    assert manifest["selection"] == {"mode": "served", "model": None}
    assert set(data_range(manifest)) >= {"bounds", "partitions", "rows", "sha256", "selection"}
    json.dumps(manifest)  # all of it is JSON


def test_written_files_match_the_manifest_and_rewrite_identically(tmp_path: Path) -> None:
    rows = [example(i) for i in range(50)]
    table = to_table(rows, ["x0"], FEATURES)
    out = tmp_path / "ds"
    first = write_dataset(out, table, "parquet", lambda sha: manifest_for(tmp_path, rows, sha))
    data = (out / "data.parquet").read_bytes()
    assert hashlib.sha256(data).hexdigest() == first["file"]["sha256"]
    assert json.loads((out / "manifest.json").read_text()) == first
    second = write_dataset(
        out, to_table(rows, ["x0"], FEATURES), "parquet", lambda sha: manifest_for(tmp_path, rows, sha)
    )
    assert (out / "data.parquet").read_bytes() == data and second["file"]["sha256"] == first["file"]["sha256"]
    assert sorted(p.name for p in out.iterdir()) == ["data.parquet", "manifest.json"]  # no temp files left

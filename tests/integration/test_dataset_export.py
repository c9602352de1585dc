"""``eddy dataset export`` against the real broker: a time range of S.labeled, its manifest, identical re-exports."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from eddy.cli import dataset as cli_dataset
from eddy.cli.common import CliError
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.dataset import Bounds, Selection, export_dataset

from tests.helpers import ValueWriter, create_topics, serdes_for

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
EVENTS = 60


def labeled(stream: str, i: int, version: int) -> dict[str, Any]:
    """Event ``e{i}`` at ``T0 + i`` seconds, labeled for ``default@version`` (version 1 answers)."""
    return {
        "event_id": f"e{i:03d}",
        "stream": stream,
        "model_name": "default",
        "model_version": version,
        "model_learned": i,
        "prediction": i % 2 == 0,
        "probabilities": {"true": 0.6, "false": 0.4},
        "features": {"x0": float(i % 10), "x1": 1.0, "x2": float(version), "region": "north"},
        "label": i % 3 == 0,
        "event_time_ms": T0 + i * 1000,
        "predicted_at_ms": T0 + i * 1000 + 5,
        "label_time_ms": T0 + i * 1000 + 2000,
        "joined_at_ms": T0 + i * 1000 + 2001,
        "segment": "north",
        "served": version == 1,
    }


def produce_labeled(settings: Settings, values: list[dict[str, Any]]) -> None:
    """Like learning writes them: keyed by event id, each record's timestamp its event's time."""
    writer = ValueWriter(settings, StreamTopics(settings.streams[0]).labeled)
    for value in values:
        data = writer.serde.encode(value)
        writer.producer.produce(writer.topic, data, value["event_id"].encode(), None, value["event_time_ms"])
    writer.producer.confirm()


@pytest.fixture()
def stream(settings: Settings) -> str:
    """A fresh stream whose S.labeled holds two versions' examples of 60 events, in label (not event) order."""
    name = settings.streams[0]
    create_topics(settings)
    values = [labeled(name, i, version) for i in range(EVENTS) for version in (1, 2)]
    random.Random(7).shuffle(values)
    values.append(labeled(name, 20, 1))  # a record written twice
    produce_labeled(settings, values)
    return name


def test_export_a_time_range_then_again_byte_for_byte(settings: Settings, stream: str, tmp_path: Path) -> None:
    serdes = serdes_for(settings)
    bounds = Bounds.parse(str(T0 + 10_000), "2023-11-14T22:13:50Z")  # events 10 to 29: until is exclusive
    first = export_dataset(settings, serdes, stream, tmp_path / "a", bounds=bounds, feature_order=["x0", "x1", "x2"])

    table = pq.read_table(tmp_path / "a" / "data.parquet")
    assert table.column("event_id").to_pylist() == [f"e{i:03d}" for i in range(10, 30)]
    assert set(table.column("model_version").to_pylist()) == {1} and set(table.column("served").to_pylist()) == {True}
    assert table.column_names[:6] == ["event_id", "event_time_ms", "label_time_ms", "x0", "x1", "x2"]
    assert table.column("x0").to_pylist()[:3] == [0.0, 1.0, 2.0]

    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest == first
    data = (tmp_path / "a" / "data.parquet").read_bytes()
    assert manifest["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["rows"] == 20 and manifest["rows_by_model"] == {"default@1": 20}
    # A time range reads whole partitions: every record written, and exactly those.
    assert manifest["records_read"] == 2 * EVENTS + 1 == sum(p["records"] for p in manifest["partitions"])
    assert len(manifest["partitions"]) == settings.partitions
    for p in manifest["partitions"]:
        if p["records"]:
            assert (p["first_offset"], p["last_offset"], p["end"]) == (0, p["records"] - 1, p["records"])
    assert manifest["schema_ids"] == [serdes.schema_id(StreamTopics(stream).labeled)]
    assert manifest["counts"]["in_bounds"] == 2 * 20 + 1 and manifest["counts"]["duplicates_dropped"] == 1
    assert manifest["bounds"]["resolved"]["until"]["value"] == T0 + 30_000
    assert manifest["code_version"] and manifest["undecodable"]["count"] == 0

    again = export_dataset(settings, serdes, stream, tmp_path / "b", bounds=bounds, feature_order=["x0", "x1", "x2"])
    assert (tmp_path / "b" / "data.parquet").read_bytes() == data
    assert again["file"]["sha256"] == manifest["file"]["sha256"]


def test_offset_bounds_and_another_versions_rows(settings: Settings, stream: str, tmp_path: Path) -> None:
    serdes = serdes_for(settings)
    manifest = export_dataset(
        settings, serdes, stream, tmp_path, bounds=Bounds.parse("5", "10"), selection=Selection.of("default@2")
    )
    for p in manifest["partitions"]:
        assert p["start"] == 5 and p["end"] <= 10
        assert p["records"] == 0 or (p["first_offset"], p["last_offset"]) == (5, p["end"] - 1)
    table = pq.read_table(tmp_path / "data.parquet")
    assert set(table.column("model_version").to_pylist()) <= {2}
    assert table.num_rows == manifest["rows"] == manifest["rows_by_model"].get("default@2", 0)


def test_the_cli_writes_csv_and_all_models(
    settings: Settings, stream: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in settings.kafka_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EDDY_CONTRACTS_DIR", str(settings.contracts_dir))
    monkeypatch.setenv("EDDY_STATE_DIR", str(tmp_path / "state"))
    parser = argparse.ArgumentParser()
    cli_dataset.add_parsers(parser.add_subparsers())
    out = tmp_path / "csv"
    args = parser.parse_args(
        ["dataset", "export", stream, "--until", str(T0 + 5_000), "--all-models", "--format", "csv", "-o", str(out)]
    )
    assert args.func(args) == 0
    assert f"exported 10 rows of {stream}.labeled" in capsys.readouterr().out
    lines = (out / "data.csv").read_text().splitlines()
    assert len(lines) == 11 and lines[0].startswith('"event_id","event_time_ms","label_time_ms","x0","x1","x2"')
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["selection"] == {"mode": "all", "model": None}
    assert manifest["rows_by_model"] == {"default@1": 5, "default@2": 5}
    bad = parser.parse_args(["dataset", "export", stream, "--from", "soon", "-o", str(out)])
    with pytest.raises(CliError, match="is not an offset"):
        bad.func(bad)

"""A history assembled from raw topic values: first record and first label win, ranges, order, and the table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from eddy.avro.serde import SerdeRegistry, TopicSerde
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.history.backtest import engine
from eddy.history.backtest.engine import BacktestModel, Event, EventTable, Label, run_backtest
from eddy.history.backtest.source import _events, _labels, _Raw
from eddy.history.bounds import Bound
from eddy.ml import linear_kernel

from tests.records import demo_contract, event

SETTINGS = Settings()


def serdes(url: str) -> SerdeRegistry:
    client = SchemaRegistryClient.new_client({"url": url})
    return SerdeRegistry(client, SETTINGS.schemas_dir, load_contracts(SETTINGS.contracts_dir))


def serde(topic: str, url: str = "mock://history") -> TopicSerde:
    found = serdes(url).for_topic(topic)
    assert isinstance(found, TopicSerde)
    return found


def raw(values: list[bytes], partitions: list[int] | None = None) -> _Raw:
    partitions = partitions or [0] * len(values)
    offsets: list[int] = []
    seen: dict[int, int] = {}
    for p in partitions:
        offsets.append(seen.get(p, 0))
        seen[p] = offsets[-1] + 1
    return _Raw(values, partitions, offsets)


def skipped() -> dict[str, int]:
    return {"undecodable": 0, "out_of_range": 0, "duplicate_event": 0, "duplicate_label": 0}


def test_events_keep_the_first_copy_inside_the_range_in_time_then_id_order() -> None:
    events = serde("demo.validated")
    same_time = 1_700_000_000_500
    records = [
        event(3),
        event(1, x0=9.0),
        event(1, x0=-1.0),  # a redelivered copy: the first one read wins
        event(10, event_time_ms=same_time, event_id="b"),
        event(11, event_time_ms=same_time, event_id="B"),
        event(12, event_time_ms=same_time, event_id="é"),
        event(13, event_time_ms=same_time, event_id="a"),
        event(2, x1=None),
        event(4, event_time_ms=5),  # before the range
    ]
    values = [events.encode(r) for r in records] + [b"junk"]
    counts = skipped()
    start = Bound("time", 1_700_000_000_000)
    table, spans, schema_ids = _events(
        demo_contract(), events, raw(values, [0, 1, 1, 2, 2, 3, 3, 0, 1, 2]), start, None, counts
    )
    assert table.ids == ["e1", "e2", "e3", "B", "a", "b", "é"]  # ties in Python's string order
    assert counts == {"undecodable": 1, "out_of_range": 1, "duplicate_event": 1, "duplicate_label": 0}
    assert table[0].record["x0"] == 9.0 and table[1].record["x1"] is None
    assert table.matrix(["x0", "x2"]) is not None and table.matrix(["x1"]) is None
    assert spans == {
        0: {"first": 0, "last": 1},
        1: {"first": 0, "last": 0},
        2: {"first": 0, "last": 1},
        3: {"first": 0, "last": 1},
    }
    assert schema_ids == {events.schema_id}  # b"junk" is too short to carry one


def test_an_offset_range_applies_per_partition() -> None:
    events = serde("demo.validated")
    values = [events.encode(event(i)) for i in range(6)]
    table, spans, _ = _events(
        demo_contract(), events, raw(values, [0, 0, 0, 1, 1, 1]), Bound("offset", 1), Bound("offset", 2), skipped()
    )
    assert table.ids == ["e1", "e4"]
    assert spans == {0: {"first": 1, "last": 1}, 1: {"first": 1, "last": 1}}


def test_labels_keep_the_earliest_arrival_then_the_first_read() -> None:
    feedback = serde("demo.feedback")

    def label(event_id: str, value: Any, at: int) -> bytes:
        return feedback.encode({"event_id": event_id, "label": value, "label_time_ms": at, "source": None})

    values = [label("e1", True, 50), label("e1", False, 40), label("e1", True, 40), label("e2", "x", 7), b""]
    counts = skipped()
    labels, _ = _labels(feedback, values, counts)
    assert {k: tuple(v) for k, v in labels.items()} == {"e1": (False, 40), "e2": ("x", 7)}
    assert counts["duplicate_label"] == 2 and counts["undecodable"] == 1


@pytest.mark.parametrize("kernel", [True, False])
def test_a_table_from_columns_backtests_exactly_as_the_list_of_events(kernel: bool, monkeypatch: Any) -> None:
    if not kernel:  # river's own path: the records are decoded from the raw values when first asked for
        monkeypatch.setattr(linear_kernel, "native", None)
    contract = demo_contract()
    events = serde("demo.validated", "mock://history-equal")
    draws = np.random.default_rng(3)
    records = [event(i, x0=float(draws.normal()), x1=float(draws.normal())) for i in range(400)]
    table, _, _ = _events(contract, events, raw([events.encode(r) for r in records]), None, None, skipped())
    listed = [Event(r["event_id"], r["event_time_ms"], r) for r in records]
    labels = {r["event_id"]: Label(r["x0"] + r["x1"] > 0, r["event_time_ms"] + 3) for r in records}
    a = run_backtest(contract, table, labels, [BacktestModel.fresh(contract.champion)])
    b = run_backtest(contract, listed, labels, [BacktestModel.fresh(contract.champion)])
    assert a.table.equals(b.table) and a.summary == b.summary
    assert EventTable.of(table) is table and [e.record for e in table] == records


@pytest.mark.parametrize("kernel", [True, False])
def test_progress_counts_every_step_of_every_model(kernel: bool, monkeypatch: Any) -> None:
    if not kernel:
        monkeypatch.setattr(linear_kernel, "native", None)
    monkeypatch.setattr(engine, "PROGRESS_STEPS", 100)
    contract = demo_contract()
    records = [event(i, x0=float(i % 7), x1=float(i % 5)) for i in range(300)]
    listed = [Event(r["event_id"], r["event_time_ms"], r) for r in records]
    labels = {r["event_id"]: Label(r["x0"] > r["x1"], r["event_time_ms"] + 2) for r in records}
    seen: list[tuple[int, int]] = []
    models = [BacktestModel.fresh(contract.champion), BacktestModel.fresh(contract.champion, "again")]
    run_backtest(contract, listed, labels, models, on_progress=lambda done, planned: seen.append((done, planned)))
    assert seen[-1] == (1200, 1200)  # 300 predictions and 300 labels, for each of 2 models
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert len(seen) >= (2 if kernel else 8)  # the kernel reports once per model

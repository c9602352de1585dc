"""``eddy.backtest``: DataFrames in, the production engine's table out, and every bad input named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import eddy
import numpy as np
import pandas as pd
import pytest
from eddy.api import BacktestError
from eddy.core.resources import demo_contract_path
from eddy.history.backtest.engine import BacktestModel, run_backtest
from eddy.history.backtest.events import Event, Label
from river import datasets

from tests.records import demo_contract

N = 600


def sea_frames(n: int = N, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events every second and their labels, arriving 20 s after their events (within the demo's lateness)."""
    rows = [
        {"event_id": f"e{i}", "event_time_ms": 1_000 * i, "x0": x[0], "x1": x[1], "x2": x[2], "region": "north"}
        for i, (x, _) in enumerate(datasets.synth.SEA(variant=0, seed=seed).take(n))
    ]
    events = pd.DataFrame(rows)
    labels = pd.DataFrame(
        {
            "event_id": events["event_id"],
            "label": events["x0"] + events["x1"] <= 8,
            "label_time_ms": events["event_time_ms"] + 20_000,
        }
    )
    return events, labels


def test_the_table_is_the_engines_own() -> None:
    events, labels = sea_frames()
    contract = demo_contract()
    engine = run_backtest(
        contract,
        [
            Event(r.event_id, int(r.event_time_ms), {"x0": r.x0, "x1": r.x1, "x2": r.x2, "region": r.region})
            for r in events.itertuples()
        ],
        {r.event_id: Label(bool(r.label), int(r.label_time_ms)) for r in labels.itertuples()},
        [BacktestModel.fresh(contract.champion)],
    )
    table = eddy.backtest(events, labels)
    pd.testing.assert_frame_equal(table, engine.table)
    summary = table.attrs["summary"]
    assert summary["stream"] == "demo" and summary["models"] == engine.summary["models"]
    assert summary["data"]["labels"] == N and summary["metric"] == "accuracy"


def test_order_duplicates_and_datetimes() -> None:
    """Rows in any order are replayed in event-time order; the first row of an id wins; datetimes are UTC."""
    events, labels = sea_frames(200)
    shuffled = events.sample(frac=1.0, random_state=3)
    duplicate = events.iloc[[5]].assign(x0=0.0, x1=0.0)  # a later row of e5: ignored
    in_order = eddy.backtest(events, labels)
    assert eddy.backtest(pd.concat([shuffled, duplicate]), labels.sample(frac=1.0, random_state=4)).equals(in_order)
    as_times = events.assign(event_time_ms=pd.to_datetime(events["event_time_ms"], unit="ms"))
    arrivals = labels.assign(label_time_ms=pd.to_datetime(labels["label_time_ms"], unit="ms", utc=True))
    assert eddy.backtest(as_times, arrivals).equals(in_order)


def test_the_earliest_label_of_an_event_wins() -> None:
    events, labels = sea_frames(100)
    wrong_later = labels.assign(label=~labels["label"], label_time_ms=labels["label_time_ms"] + 1)
    assert eddy.backtest(events, pd.concat([wrong_later, labels])).equals(eddy.backtest(events, labels))


def test_labels_from_the_events_own_column_with_a_fixed_delay() -> None:
    events, labels = sea_frames(300)
    with_label = events.assign(label=labels["label"])
    table = eddy.backtest(with_label, label_delay="20s")
    assert table.equals(eddy.backtest(events, labels))
    assert table.attrs["summary"]["label_delay"] == "20000 ms"
    assert eddy.backtest(with_label, label_delay=20_000).equals(table)


def test_contract_as_a_path_a_stream_name_or_an_object() -> None:
    events, labels = sea_frames(100)
    expected = eddy.backtest(events, labels)
    for contract in (demo_contract_path(), str(demo_contract_path()), "demo", demo_contract()):
        assert eddy.backtest(events, labels, contract=contract).equals(expected)


def test_several_models_from_names_specs_and_files(tmp_path: Path) -> None:
    events, labels = sea_frames(300)
    spec = tmp_path / "tree.json"
    spec.write_text(
        json.dumps({"name": "tree", "features": ["x0", "x1"], "pipeline": [{"tree.HoeffdingTreeClassifier": {}}]})
    )
    table = eddy.backtest(events, labels, models=["default", spec])
    assert table["model"].unique().tolist() == ["spec:default", "spec:tree"]
    assert {m["model"] for m in table.attrs["summary"]["models"]} == {"spec:default", "spec:tree"}
    assert len(table) == 2 * 300


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"events": [1, 2]}, "events: a pandas DataFrame, not list"),
        ({"drop": "event_id"}, "events: no column 'event_id' (the contract's id_field)"),
        ({"drop": "event_time_ms"}, "events: no column 'event_time_ms' (the contract's time_field)"),
        ({"times": ["a"] * 5}, "must hold epoch milliseconds or datetimes"),
        ({"times": [0.5] * 5}, "must hold whole milliseconds"),
        ({"labels": None}, "events have no 'label' column"),
        ({"no_label_time": True}, "label_delay='observed' needs a 'label_time_ms' column"),
        ({"label_delay": "soon"}, "label_delay: "),
        ({"label_delay": -5}, "label_delay: -5 ms is negative"),
        ({"models": []}, "models: give at least one model"),
        ({"models": ["default", "default"]}, "given more than once"),
        ({"models": ["nope"]}, "'nope' is not a model of demo (default)"),
        ({"models": ["default@3"]}, "run `eddy backtest demo --model default@3`"),
        ({"models": ["missing.json"]}, "cannot read the spec file missing.json"),
        ({"contract": "no-such-stream"}, "neither a contract file nor a stream of"),
        ({"all_unlabeled": True}, "labels: there are none"),
    ],
)
def test_bad_input_is_named(change: dict[str, object], message: str) -> None:
    events, labels = sea_frames(5)
    kw: dict[str, object] = {"labels": labels}
    if "drop" in change:
        events = events.drop(columns=[str(change.pop("drop"))])
    if "times" in change:
        events = events.assign(event_time_ms=change.pop("times"))
    if change.pop("no_label_time", False):
        kw["labels"] = labels.drop(columns=["label_time_ms"])
    if change.pop("all_unlabeled", False):
        kw["labels"] = labels.assign(label=np.nan)
    kw.update(change)
    frame = kw.pop("events", events)
    with pytest.raises(BacktestError) as caught:
        eddy.backtest(frame, **kw)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_missing_contract_file_is_a_contract_error(tmp_path: Path) -> None:
    from eddy.contracts.durations import ContractError

    events, labels = sea_frames(5)
    with pytest.raises(ContractError, match="cannot read contract"):
        eddy.backtest(events, labels, contract=tmp_path / "gone.yaml")


def test_import_eddy_is_light() -> None:
    """``import eddy`` (which every service does first) loads neither pandas nor httpx nor the engine."""
    code = "import sys, eddy; print(sorted(m for m in ('pandas', 'httpx', 'river', 'eddy.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = eddy.nothing  # type: ignore[attr-defined]
    assert {"Client", "backtest", "__version__"} <= set(dir(eddy))

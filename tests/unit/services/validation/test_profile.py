import io
import json
import math
from typing import Any

import fastavro
import numpy as np
import pytest
from eddy.core.settings import REPO_ROOT
from eddy.services.validation.profile import (
    QUANTILES,
    FeatureProfile,
    ProfileTracker,
    QuantileSketch,
    StreamProfile,
    bin_of,
)

from tests.records import demo_contract, event, record


def numeric(values: Any, type: str = "double") -> FeatureProfile:
    feature = FeatureProfile("x", type)
    for v in values:
        feature.update(v)
    return feature


def rank_of(data: np.ndarray, value: float) -> float:
    return float(np.mean(data <= value))


def avro_round_trip(value: dict[str, Any]) -> dict[str, Any]:
    schema = fastavro.parse_schema(json.loads((REPO_ROOT / "schemas/profile.avsc").read_text()))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, value)
    buf.seek(0)
    out: dict[str, Any] = fastavro.schemaless_reader(buf, schema, schema)  # type: ignore[assignment]
    return out


def demo_events(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    regions = ["north", "south", "east", "west", None]
    return [
        event(
            i,
            x0=float(rng.uniform(0, 10)),
            x1=float(rng.normal(5, 1)),
            x2=None if i % 10 == 0 else float(rng.exponential(2)),
            region=regions[int(rng.integers(0, 5))],
        )
        for i in range(n)
    ]


def test_numeric_stats_match_numpy() -> None:
    data = np.random.default_rng(42).normal(3.0, 2.0, 50_000)
    feature = numeric(data.tolist())
    assert feature.count == data.size and feature.nulls == 0
    assert feature.mean == pytest.approx(float(data.mean()), rel=1e-9)
    assert feature.variance == pytest.approx(float(data.var(ddof=1)), rel=1e-9)
    assert (feature.min, feature.max) == (float(data.min()), float(data.max()))
    quantiles = feature.quantiles()
    assert list(quantiles) == list(QUANTILES)
    for q in QUANTILES:
        assert abs(rank_of(data, quantiles[q]) - q) < 0.01, q
    assert quantiles[0.5] == pytest.approx(float(np.median(data)), abs=0.05)
    assert quantiles[0.9] == pytest.approx(float(np.quantile(data, 0.9)), abs=0.05)


def test_quantiles_are_exact_until_the_sketch_compacts() -> None:
    data = np.random.default_rng(1).exponential(1.0, 150)
    feature = numeric(data.tolist())
    expected = np.quantile(data, QUANTILES, method="hazen")
    assert list(feature.quantiles().values()) == pytest.approx(expected.tolist(), rel=1e-12)


@pytest.mark.parametrize("shape", ["sorted", "reversed", "drifting", "skewed"])
def test_sketch_rank_error_is_small_on_awkward_orders(shape: str) -> None:
    rng = np.random.default_rng(3)
    data = {
        "sorted": np.sort(rng.normal(size=100_000)),
        "reversed": -np.sort(rng.normal(size=100_000)),
        "drifting": rng.normal(size=100_000) + np.linspace(0, 5, 100_000),
        "skewed": rng.lognormal(0, 2, 100_000),
    }[shape]
    sketch = QuantileSketch()
    for x in data.tolist():
        sketch.update(x)
    assert sketch.n == data.size
    assert len(sketch) <= 4 * sketch.k
    for q, value in zip(QUANTILES, sketch.quantiles(QUANTILES), strict=True):
        assert abs(rank_of(data, value) - q) < 0.01, q


def test_long_features_are_numeric() -> None:
    feature = numeric([1, 2, 3, 4], type="long")
    assert (feature.count, feature.mean, feature.min, feature.max) == (4, 2.5, 1.0, 4.0)
    assert feature.to_record()["categories"] == {}


def test_nulls_are_counted_and_leave_the_stats_alone() -> None:
    feature = numeric([1.0, None, 3.0, None, math.nan, math.inf])
    assert (feature.count, feature.nulls) == (2, 4)
    assert (feature.mean, feature.variance) == (2.0, 2.0)
    empty = numeric([None, None])
    assert (empty.count, empty.nulls, empty.variance, empty.quantiles()) == (0, 2, None, {})
    stats = empty.to_record()
    assert stats["mean"] is None and stats["min"] is None and stats["bin_edges"] == []


def test_bin_edges_split_continuous_values_into_equal_shares() -> None:
    data = np.random.default_rng(5).normal(size=20_000)
    feature = numeric(data.tolist())
    edges = feature.bin_edges(10)
    assert len(edges) == 9 and edges == sorted(set(edges))
    fractions = feature.bin_fractions(edges)
    assert len(fractions) == 10 and sum(fractions) == pytest.approx(1.0)
    assert fractions == pytest.approx([0.1] * 10, abs=0.01)
    actual = np.bincount([bin_of(edges, x) for x in data.tolist()], minlength=10) / data.size
    assert actual.tolist() == pytest.approx(fractions, abs=0.01)


def test_bin_edges_merge_bins_of_tied_values() -> None:
    feature = numeric([0.0] * 700 + [1.0] * 300)
    edges = feature.bin_edges(10)
    assert edges == sorted(set(edges)) and 0 < len(edges) < 9
    fractions = feature.bin_fractions(edges)
    assert fractions[0] == pytest.approx(0.7) and sum(fractions) == pytest.approx(1.0)
    assert numeric([4.2] * 50).bin_edges(10) == [4.2]


def test_bin_of_puts_outliers_in_the_end_bins() -> None:
    edges = [1.0, 2.0, 3.0]
    assert [bin_of(edges, v) for v in (-1e9, 1.0, 1.0001, 3.0, 1e9)] == [0, 0, 1, 2, 3]


def test_categorical_frequencies_and_booleans() -> None:
    region = FeatureProfile("region", "string")
    for v in ["north"] * 5 + ["south"] * 3 + [None] * 2:
        region.update(v)
    assert (region.count, region.nulls) == (8, 2)
    assert region.category_counts() == ({"north": 5, "south": 3}, 0)
    flag = FeatureProfile("flag", "boolean")
    for b in (True, True, False, None):
        flag.update(b)
    assert flag.category_counts() == ({"true": 2, "false": 1}, 0)
    stats = flag.to_record()
    assert stats["mean"] is None and stats["quantiles"] == [] and stats["sketch"] is None


def test_top_k_keeps_the_most_frequent_and_counts_the_rest_as_other() -> None:
    feature = FeatureProfile("city", "string", top_k=3)
    # Category c<i> appears 10 - i times.
    for i in range(10):
        for _ in range(10 - i):
            feature.update(f"c{i}")
    categories, other = feature.category_counts()
    assert categories == {"c0": 10, "c1": 9, "c2": 8}
    assert other == sum(range(1, 8))
    assert sum(categories.values()) + other == feature.count


def test_high_cardinality_stays_bounded_and_consistent() -> None:
    feature = FeatureProfile("user", "string", top_k=5)
    for i in range(10_000):
        feature.update("hot" if i % 2 else f"user-{i}")
    assert len(feature.categories) <= 10
    categories, other = feature.category_counts()
    assert categories["hot"] == 5_000
    assert sum(categories.values()) + other == feature.count == 10_000


def test_merge_equals_profiling_everything_in_one_place() -> None:
    data = np.random.default_rng(9).gamma(2.0, 2.0, 30_000)
    left, right = numeric(data[:12_000].tolist()), numeric(data[12_000:].tolist())
    left.merge(right)
    assert left.count == data.size
    assert left.mean == pytest.approx(float(data.mean()), rel=1e-9)
    assert left.variance == pytest.approx(float(data.var(ddof=1)), rel=1e-9)
    assert (left.min, left.max) == (float(data.min()), float(data.max()))
    assert left.sketch is not None and left.sketch.n == data.size and len(left.sketch) <= 4 * left.sketch.k
    assert abs(rank_of(data, left.quantiles()[0.5]) - 0.5) < 0.01
    with pytest.raises(ValueError):
        left.merge(FeatureProfile("y", "double"))


def test_stream_profile_on_the_demo_contract() -> None:
    contract = demo_contract()
    profile = StreamProfile.from_contract(contract)
    assert [(f.name, f.type) for f in profile.features.values()] == [
        ("x0", "double"),
        ("x1", "double"),
        ("x2", "double"),
        ("region", "string"),
    ]
    events = demo_events(500)
    for offset, value in enumerate(events):
        profile.update(value, partition=offset % 2, offset=100 + offset)
    assert profile.count == 500
    for feature in profile.features.values():
        assert feature.count + feature.nulls == 500
    assert profile.features["x2"].nulls == 50
    x0 = np.array([e["x0"] for e in events])
    assert profile.features["x0"].mean == pytest.approx(float(x0.mean()), rel=1e-9)
    regions = profile.features["region"]
    assert sum(regions.categories.values()) == regions.count == sum(e["region"] is not None for e in events)
    assert set(regions.categories) <= {"north", "south", "east", "west"}
    assert profile.offsets == {0: [100, 598], 1: [101, 599]}


def test_to_record_round_trips_through_avro_and_from_record() -> None:
    profile = StreamProfile.from_contract(demo_contract())
    for offset, value in enumerate(demo_events(3_000)):
        profile.update(value, partition=0, offset=offset)
    profile.source_topic = "demo.events"
    value = profile.to_record("running", now_ms=1_700_000_000_000)
    decoded = avro_round_trip(value)
    assert decoded == value
    assert decoded["records"] == 3_000 and decoded["offsets"] == [
        {"partition": 0, "first_offset": 0, "last_offset": 2_999}
    ]
    view = StreamProfile.from_record(decoded)
    assert view.count == 3_000 and view.stream == "demo" and view.source_topic == "demo.events"
    for name, original in profile.features.items():
        rebuilt = view.features[name]
        assert (rebuilt.count, rebuilt.nulls) == (original.count, original.nulls)
        assert rebuilt.category_counts() == original.category_counts()
        if original.numeric:
            assert rebuilt.mean == original.mean and (rebuilt.min, rebuilt.max) == (original.min, original.max)
            assert rebuilt.variance == pytest.approx(original.variance, rel=1e-12)
            assert rebuilt.quantiles() == original.quantiles()
            assert rebuilt.bin_edges(10) == original.bin_edges(10)
            assert rebuilt.bin_edges(4) == original.bin_edges(4)
    again = view.to_record("running", now_ms=1_700_000_000_000)
    assert again["features"][3] == value["features"][3]
    assert [f["quantiles"] for f in again["features"]] == [f["quantiles"] for f in value["features"]]


def test_empty_profile_encodes() -> None:
    value = StreamProfile.from_contract(demo_contract()).to_record("running", now_ms=1)
    assert avro_round_trip(value) == value


def test_reference_freezes_at_n_and_is_emitted_exactly_once() -> None:
    tracker = ProfileTracker(demo_contract(), reference_size=100, interval_s=10.0)
    events = demo_events(250)
    records = [record("demo.events", e, offset=1_000 + i) for i, e in enumerate(events)]
    tracker.observe(records[:60])
    assert not tracker.reference_complete
    assert [m.key for m in tracker.due(now=1.0)] == ["demo:running"]
    tracker.observe(records[60:130])  # crosses N inside the batch
    assert tracker.reference_complete and tracker.reference is not None
    assert tracker.reference.count == 100 and tracker.running.count == 130
    assert tracker.reference.offsets == {0: [1_000, 1_099]}
    x0 = np.array([e["x0"] for e in events[:100]])
    assert tracker.reference.features["x0"].mean == pytest.approx(float(x0.mean()), rel=1e-9)
    (published,) = tracker.due(now=2.0)
    assert published.key == "demo:reference" and published.value["kind"] == "reference"
    assert published.value["records"] == 100 and published.value["created_at_ms"] == 2_000
    tracker.observe(records[130:])
    assert tracker.reference.count == 100
    assert tracker.reference.features["x0"].count == 100
    keys = [m.key for now in (3.0, 11.0, 30.0) for m in tracker.due(now=now)]
    assert keys == ["demo:running"]


def test_running_profile_is_emitted_by_interval_only_when_changed() -> None:
    tracker = ProfileTracker(demo_contract(), reference_size=0, interval_s=10.0)
    assert tracker.due(now=0.0) == []
    events = demo_events(40)
    tracker.observe_values(events[:10])
    (first,) = tracker.due(now=100.0)
    assert (first.key, first.value["kind"], first.value["records"]) == ("demo:running", "running", 10)
    tracker.observe_values(events[10:20])
    assert tracker.due(now=105.0) == []
    (second,) = tracker.due(now=110.0)
    assert second.value["records"] == 20
    assert tracker.due(now=200.0) == []
    tracker.observe_values(events[20:])
    assert [m.value["records"] for m in tracker.due(now=201.0)] == [40]
    assert not tracker.reference_complete


def test_restored_reference_is_not_published_again() -> None:
    first = ProfileTracker(demo_contract(), reference_size=50)
    first.observe_values(demo_events(60))
    (reference,) = [m for m in first.due(now=1.0) if m.key == "demo:reference"]
    restarted = ProfileTracker(demo_contract(), reference_size=50)
    restarted.restore_reference(avro_round_trip(reference.value))
    assert restarted.reference_complete
    restarted.observe_values(demo_events(80, seed=8))
    assert [m.key for m in restarted.due(now=2.0)] == ["demo:running"]
    assert restarted.reference is not None and restarted.reference.count == 50


def test_schema_documents_every_field() -> None:
    def undocumented(schema: Any, path: str) -> list[str]:
        if isinstance(schema, list):
            return [m for s in schema for m in undocumented(s, path)]
        if not isinstance(schema, dict):
            return []
        if schema.get("type") == "array":
            return undocumented(schema["items"], path)
        missing = []
        for f in schema.get("fields", []):
            if not f.get("doc"):
                missing.append(f"{path}.{f['name']}")
            missing += undocumented(f["type"], f"{path}.{f['name']}")
        return missing

    schema = json.loads((REPO_ROOT / "schemas/profile.avsc").read_text())
    assert schema["name"] == "DataProfile" and schema["namespace"] == "io.eddy"
    assert undocumented(schema, "DataProfile") == []


def test_a_profile_published_without_sketches_still_gives_its_quantiles_and_bins() -> None:
    tracker = ProfileTracker(demo_contract(), reference_size=0, include_sketches=False)
    tracker.observe_values(demo_events(2_000))
    (message,) = tracker.due(now=1.0)
    value = message.value
    assert all(f["sketch"] is None for f in value["features"])
    with_sketches = tracker.running.to_record("running", now_ms=1_000)
    assert len(json.dumps(value)) < len(json.dumps(with_sketches)) / 5
    view = StreamProfile.from_record(avro_round_trip(value))
    x1, original = view.features["x1"], tracker.running.features["x1"]
    assert x1.quantiles() == original.quantiles()
    edges = x1.bin_edges()
    assert edges == original.bin_edges() and x1.bin_fractions(edges) == original.bin_fractions(edges)
    assert view.to_record("running", now_ms=1_000) == value

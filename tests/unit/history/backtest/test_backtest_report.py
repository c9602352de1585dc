"""The backtest report: charts, summary, escaping, determinism and size, on synthetic result tables.

The tables follow the engine's contract (``shared/eddy/history/backtest/engine.py``) but are made up
here with numpy, so these tests need no model and run in seconds, even the million-row one.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from eddy.history.backtest import svg
from eddy.history.backtest.report import default_window, render_report, write_report

from tests.browser.chromium import Element, parse_dom

HOSTILE = "<script>alert(1)</script>"
CLASSES = np.array(["cat", "dog", "bird"], dtype=object)


def _interleave(frames: list[pd.DataFrame]) -> pd.DataFrame:
    # the engine's order: by seq, then in the order the models were given
    return pd.concat(frames, ignore_index=True).sort_values("seq", kind="stable").reset_index(drop=True)


def _base(name: str, n: int) -> dict[str, Any]:
    seq = np.arange(n, dtype=np.int64)
    return {
        "seq": seq,
        "model": name,
        "event_id": np.char.add("e", seq.astype(str)).astype(object),
        "event_time_ms": 1_700_000_000_000 + seq * 1000,
        "arrival_ms": 1_700_000_000_000 + seq * 1000 + 5000,
    }


def make_binary(n: int, skills: dict[str, float | None], seed: int = 7) -> pd.DataFrame:
    """One frame per model: ``skill`` moves scores toward the truth; ``None`` is a model that never predicted."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.4
    y_true = np.where(truth, "true", "false").astype(object)
    frames = []
    for name, skill in skills.items():
        frame = _base(name, n)
        if skill is None:
            y_pred: np.ndarray = np.full(n, None, dtype=object)
            score = correct = np.full(n, np.nan)
            metric = np.zeros(n)  # river's accuracy of nothing
        else:
            score = np.clip(0.5 + skill * (truth - 0.5) + rng.normal(0, 0.25, n), 0, 1)
            y_pred = np.where(score >= 0.5, "true", "false").astype(object)
            correct = (y_pred == y_true).astype(float)
            metric = np.cumsum(correct) / np.arange(1, n + 1)
        frame |= {"y_true": y_true, "y_pred": y_pred, "score": score, "correct": correct, "error": np.nan}
        frames.append(pd.DataFrame(frame | {"metric": metric}))
    return _interleave(frames)


def make_multiclass(n: int, names: list[str], seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y_true = CLASSES[rng.integers(0, 3, n)]
    frames = []
    for i, name in enumerate(names):
        right = rng.random(n) < 0.6 + 0.1 * i
        y_pred = np.where(right, y_true, CLASSES[rng.integers(0, 3, n)])
        correct = (y_pred == y_true).astype(float)
        score = np.clip(0.45 + 0.3 * correct + rng.normal(0, 0.1, n), 0.34, 1)
        frame = _base(name, n) | {"y_true": y_true, "y_pred": y_pred, "score": score, "correct": correct}
        frame |= {"error": np.nan, "metric": np.cumsum(correct) / np.arange(1, n + 1)}
        frames.append(pd.DataFrame(frame))
    return _interleave(frames)


def make_regression(n: int, noise: dict[str, float | None], seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(50, 10, n)
    frames = []
    for name, sigma in noise.items():
        if sigma is None:
            y_pred, metric = np.full(n, np.nan), np.zeros(n)  # river's MAE of nothing: the "best" possible
        else:
            y_pred = y_true + rng.normal(0.5, sigma, n)
            metric = np.cumsum(np.abs(y_pred - y_true)) / np.arange(1, n + 1)
        frame = _base(name, n) | {"y_true": y_true, "y_pred": y_pred, "score": np.nan, "correct": np.nan}
        frames.append(pd.DataFrame(frame | {"error": y_pred - y_true, "metric": metric}))
    return _interleave(frames)


def summary_of(results: pd.DataFrame, task: str, **extra: Any) -> dict[str, Any]:
    """The summary the engine would write for ``results``."""
    metric = "mae" if task == "regression" else "accuracy"
    models = []
    for name, rows in results.groupby("model", sort=False):
        final = float(rows["metric"].iloc[-1])
        models.append(
            {
                "model": name,
                "spec": '{\n  "model": "linear_model.LogisticRegression",\n  "params": {"l2": 0.01}\n}',
                "start": "fresh" if len(models) else "warm from default@1",
                "events": len(rows) + 10,
                "labels": len(rows),
                "final_metric": final,
                "metrics": {metric: final, "f1" if task != "regression" else "rmse": round(final / 2, 6)},
            }
        )
    labels = int(results["seq"].max()) + 1 if len(results) else 0
    return {
        "stream": "demo",
        "task": task,
        "metric": metric,
        "label_delay": "observed",
        "data": {
            "from": "2024-01-01T00:00:00Z",
            "until": "2024-02-01T00:00:00Z",
            "events": labels + 10,
            "labels": labels,
            "offsets": {"demo.events": {"0": [0, labels + 10]}, "demo.labels": {"0": [0, labels]}},
        },
        "models": models,
        "created_by": "eddy backtest (tests)",
        **extra,
    }


def dom_of(results: pd.DataFrame, summary: dict[str, Any], **kwargs: Any) -> tuple[str, Element]:
    page = render_report(results, summary, **kwargs)
    return page, parse_dom(page)


def charts(dom: Element, name: str) -> list[Element]:
    return dom.find_all("svg", data_chart=name)


def drawn(chart: Element) -> int:
    return int(chart.attrs["data-points"])


def model_rows(dom: Element) -> dict[str, Element]:
    rows = dom.find("table", data_table="models").find_all("tr")
    return {row.attrs["data-model"]: row for row in rows if "data-model" in row.attrs}


def test_binary_two_models() -> None:
    results = make_binary(3000, {"default@2": 0.6, "spec:lr-fast": 0.2})
    page, dom = dom_of(results, summary_of(results, "binary"))

    assert page.startswith("<!doctype html>")
    assert "demo" in dom.find("head").find("title").text and "2024-01-01" in dom.find("header").text
    for name in ("metric-cumulative", "metric-windowed"):
        (chart,) = charts(dom, name)
        series = chart.find_all("path", **{"class": "series"})
        assert [p.attrs["data-series"] for p in series] == ["default@2", "spec:lr-fast"]
        assert all(p.attrs["d"].startswith("M") and len(p.attrs["d"]) > 100 for p in series)
    calibration = charts(dom, "calibration")
    assert len(calibration) == 2 and all(drawn(c) > 3 for c in calibration)
    assert not charts(dom, "error-histogram")

    rows = model_rows(dom)
    assert list(rows) == ["default@2", "spec:lr-fast"]
    assert "best" in rows["default@2"].classes and "best" not in rows["spec:lr-fast"].classes
    assert "warm from default@1" in rows["default@2"].text and "3,010" in rows["default@2"].text
    assert "f1" in dom.find("table", data_table="models").find("thead").text
    # default window: max(100, labels // 50)
    assert dom.find("body").attrs["data-window"] == str(default_window(3000)) == "100"
    footer = dom.find("footer")
    assert "observed" in footer.text and "demo.events / 0" in footer.text and "[0, 3010]" in footer.text


def test_binary_calibration_is_of_the_positive_class() -> None:
    # a model that always says P(true) = 0.9 on a stream that is 40 % true: one dot at (0.9, 0.4)
    results = make_binary(1000, {"m": 0.6})
    results["score"] = 0.9
    _, dom = dom_of(results, summary_of(results, "binary"))
    (chart,) = charts(dom, "calibration")
    (dot,) = chart.find_all("circle", **{"class": "bin"})
    assert dot.attrs["data-count"] == "1000"
    share_true = (results["y_true"] == "true").mean()
    assert f"observed {share_true:.3f}" in dot.text


def test_multiclass() -> None:
    results = make_multiclass(2000, ["a", "b", "c"])
    _, dom = dom_of(results, summary_of(results, "multiclass"))

    assert dom.find("body").attrs["data-task"] == "multiclass"
    assert drawn(charts(dom, "metric-cumulative")[0]) > 0 and drawn(charts(dom, "metric-windowed")[0]) > 0
    calibration = charts(dom, "calibration")
    assert [c.attrs["data-chart"] for c in calibration] == ["calibration"] * 3
    assert all(drawn(c) > 0 for c in calibration) and "share correct" in calibration[0].text
    assert "best" in model_rows(dom)["c"].classes  # the most accurate by construction


def test_regression_with_a_model_that_never_predicted() -> None:
    results = make_regression(2500, {"good": 1.0, "bad": 5.0, "silent": None})
    _, dom = dom_of(results, summary_of(results, "regression"), window=250)

    (hist,) = charts(dom, "error-histogram")
    assert [p.attrs["data-series"] for p in hist.find_all("path", **{"class": "series"})] == ["good", "bad"]
    assert "silent (no data)" in hist.text
    assert not charts(dom, "calibration")
    rows = model_rows(dom)
    # its MAE of 0 is no measurement: the best is the least wrong model that predicted
    assert "best" in rows["good"].classes and "best" not in rows["silent"].classes
    assert "never predicted" in rows["silent"].text and "0.0%" in rows["silent"].text
    assert rows["silent"].find("td", **{"class": "num headline"}).text == "—"
    windowed = charts(dom, "metric-windowed")[0]
    assert "silent" not in {p.attrs["data-series"] for p in windowed.find_all("path", **{"class": "series"})}
    assert dom.find("body").attrs["data-window"] == "250" and "last 250 labels" in dom.find(id="charts").text
    errors = dom.find("table", data_table="errors")
    assert "—" in errors.find("tr", data_model="silent").text


def test_one_model_never_predicting_gives_empty_charts_not_a_crash() -> None:
    results = make_binary(500, {"silent": None})
    _, dom = dom_of(results, summary_of(results, "binary"))
    for name in ("metric-cumulative", "metric-windowed", "calibration"):
        (chart,) = charts(dom, name)
        assert drawn(chart) == 0 and chart.find_all("text", **{"class": "empty"})
    assert "best" not in model_rows(dom)["silent"].classes


@pytest.mark.parametrize("results", [pd.DataFrame(), make_binary(10, {"m": 0.5}).iloc[:0]], ids=["bare", "typed"])
def test_empty_results_say_so(results: pd.DataFrame) -> None:
    summary = summary_of(make_binary(10, {"m": 0.5}), "binary")
    _, dom = dom_of(results, summary)
    assert "nothing to plot" in dom.find(data_empty="results").text
    assert not dom.find_all("svg")
    assert list(model_rows(dom)) == ["m"]
    # the bare minimum summary works too
    _, bare = dom_of(pd.DataFrame(), {})
    assert "nothing to plot" in bare.find(data_empty="results").text
    assert "no models" in bare.find("table", data_table="models").text


def test_a_hostile_model_name_is_escaped_everywhere() -> None:
    results = make_binary(400, {HOSTILE: 0.5, "ok": 0.4})
    summary = summary_of(results, "binary", stream=HOSTILE)
    summary["models"][0]["spec"] = HOSTILE
    summary["data"]["offsets"] = {HOSTILE: {"0": [0, 1]}}
    page, dom = dom_of(results, summary)

    assert HOSTILE not in page and "alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert len(dom.find_all("script")) == 1, "only the page's own script"
    assert HOSTILE in model_rows(dom)  # the parser unescapes it: it is shown as text
    assert any(p.attrs.get("data-series") == HOSTILE for p in charts(dom, "metric-cumulative")[0].iter())


def test_the_page_fetches_nothing() -> None:
    results = make_regression(300, {"m": 1.0})
    page = render_report(results, summary_of(results, "regression"))
    urls = re.findall(r"(?:src|href)\s*=\s*\"([^\"]*)\"", page)
    assert urls == ["data:,"]
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in page and "unsafe-inline" not in page


def test_same_input_same_page() -> None:
    results = make_binary(2000, {"a": 0.5, "b": 0.3})
    summary = summary_of(results, "binary")
    first = render_report(results, summary)
    assert render_report(results.copy(), {**summary}) == first
    assert render_report(results, summary, window=100) == first  # 100 is the default here
    assert render_report(results, summary, window=400) != first


def test_unknown_keys_are_shown_not_dropped(tmp_path: Path) -> None:
    results = make_binary(200, {"m": 0.5})
    summary = summary_of(results, "binary", seed=42, engine_version="0.1")
    summary["data"]["unusable_labels"] = 3
    summary["data"]["offsets"] = {"demo.validated:0": {"first": 0, "last": 199}, "demo.feedback:1": {}}
    summary["models"][0]["trained_for_ms"] = 1234
    path = write_report(tmp_path / "nested" / "report.html", results, summary)
    dom = parse_dom(path.read_text(encoding="utf-8"))
    footer = dom.find("footer").text
    assert "engine_version" in footer and "seed" in footer and "data.unusable_labels" in footer
    offsets = [row.text for row in dom.find("table", data_table="offsets").find_all("tr")]
    assert offsets == ['demo.validated:0{"first": 0, "last": 199}', "demo.feedback:1{}"]
    assert "trained_for_ms" in dom.find("details", data_model="m").text


def test_a_million_rows_make_a_small_page() -> None:
    results = make_binary(500_000, {"default@2": 0.6, "spec:lr-fast": 0.3})
    assert len(results) == 1_000_000
    started = time.perf_counter()
    page = render_report(results, summary_of(results, "binary"))
    elapsed = time.perf_counter() - started
    size = len(page.encode())
    assert size < 2_000_000, f"{size:,} bytes"
    assert elapsed < 60, f"{elapsed:.1f} s"
    dom = parse_dom(page)
    assert dom.find("body").attrs["data-window"] == "10000"
    for chart in charts(dom, "metric-cumulative") + charts(dom, "metric-windowed"):
        assert drawn(chart) <= 2 * svg.MAX_POINTS
        for path in chart.find_all("path", **{"class": "series"}):
            assert path.attrs["d"].count("L") + 1 <= svg.MAX_POINTS


# ---------- the chart kit on its own ----------


def test_downsample_keeps_the_ends_and_bounds_the_points() -> None:
    xs, ys = svg.downsample(np.arange(1_000_003), np.arange(1_000_003) * 2.0, max_points=1000)
    assert len(xs) == 1000 and xs[0] == 0 and xs[-1] == 1_000_002 and ys[-1] == 2_000_004
    assert np.all(np.diff(xs) > 0)


def test_charts_are_deterministic_and_escape_their_text() -> None:
    series = [svg.Series(HOSTILE, [0, 1, 2], [0.1, float("nan"), 0.3]), svg.Series("b&c", [0, 2], [1, 2])]
    first = svg.line_chart(series, chart="x", x_label="<x>", y_label='"y"')
    assert first == svg.line_chart(series, chart="x", x_label="<x>", y_label='"y"')
    assert "<script>" not in first and "&lt;x&gt;" in first and "b&amp;c" in first
    assert 'data-points="4"' in first  # the NaN point is left out
    hist = svg.histogram([svg.Sample(HOSTILE, [1, 2, 3])], chart="h")
    assert "<script>" not in hist
    empty = svg.histogram([], chart="h")
    assert 'data-points="0"' in empty and "no data" in empty


def test_ticks_and_numbers() -> None:
    assert svg.nice_ticks(0.83, 0.97) == [0.85, 0.9, 0.95]
    assert svg.nice_ticks(0, 1_000_000) == [0, 200_000, 400_000, 600_000, 800_000, 1_000_000]
    assert svg.format_number(0.9, 0.02) == "0.90" and svg.format_number(1_000_000, 200_000) == "1.0M"
    assert svg.format_number(-0.0, 0.1) == "0" and svg.format_number(12, 2.5) == "12.0"

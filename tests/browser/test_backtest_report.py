"""The backtest report in a real (headless) Chromium: opened from a file, it draws every chart with no error.

The report needs no server: it is one file with its CSS and SVG inline and a Content
Security Policy that forbids any fetch, so a failed or blocked load shows up in the
page's error box like a JavaScript error does (the dashboard's convention).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eddy.history.backtest.report import write_report

from tests.browser.chromium import Element, artifacts_dir, parse_dom, render, require_chromium
from tests.unit.history.backtest.test_backtest_report import HOSTILE, make_binary, make_regression, summary_of


@pytest.fixture(autouse=True)
def chromium() -> str:
    return require_chromium()


def assert_loaded_cleanly(dom: Element) -> None:
    box = dom.find(id="js-errors")
    assert "hidden" in box.attrs and not box.text.strip(), f"error on the page: {box.text}"
    # set by the page's own script once the document is parsed: the policy let it run and it got to the end
    assert dom.find("body").attrs.get("data-ready") == "true"


def series_paths(dom: Element, chart: str) -> list[Element]:
    (svg,) = dom.find_all("svg", data_chart=chart)
    assert int(svg.attrs["data-points"]) > 0, f"chart {chart} drew nothing"
    paths = svg.find_all("path", **{"class": "series"})
    assert paths and all(p.attrs.get("d", "").startswith("M") for p in paths), f"chart {chart} has empty paths"
    return paths


def test_binary_report_in_the_browser(tmp_path: Path) -> None:
    results = make_binary(20_000, {"default@2": 0.6, "spec:lr-fast": 0.3, "never": None})
    page = write_report(tmp_path / "backtest-report.html", results, summary_of(results, "binary"))
    shot = artifacts_dir() / "backtest-report.png"
    dom = parse_dom(render(page.as_uri(), screenshot=shot, size=(1280, 1500)))

    assert_loaded_cleanly(dom)
    for chart in ("metric-cumulative", "metric-windowed"):
        assert [p.attrs["data-series"] for p in series_paths(dom, chart)] == ["default@2", "spec:lr-fast"]
    calibration = {f.attrs["data-model"]: f.find("svg") for f in dom.find_all("figure", **{"class": "chart small"})}
    assert list(calibration) == ["default@2", "spec:lr-fast", "never"]
    assert all(len(calibration[m].find_all("circle", **{"class": "bin"})) > 3 for m in ("default@2", "spec:lr-fast"))
    assert calibration["never"].attrs["data-points"] == "0" and "no probabilities" in calibration["never"].text
    best = dom.find("tr", data_model="default@2")
    assert "best" in best.classes and "never predicted" in dom.find("tr", data_model="never").text
    assert shot.is_file() and shot.stat().st_size > 10_000, "the screenshot is missing or blank"


def test_regression_report_with_a_hostile_name_in_the_browser(tmp_path: Path) -> None:
    results = make_regression(5_000, {HOSTILE: 1.0, "baseline": 3.0})
    page = write_report(tmp_path / "report.html", results, summary_of(results, "regression", stream=HOSTILE))
    dom = parse_dom(render(page.as_uri(), screenshot=artifacts_dir() / "backtest-report-regression.png"))

    assert_loaded_cleanly(dom)
    assert len(dom.find_all("script")) == 1, "a model's name became a script"
    assert HOSTILE in dom.find("header").text  # shown as text
    assert [p.attrs["data-series"] for p in series_paths(dom, "error-histogram")] == [HOSTILE, "baseline"]
    series_paths(dom, "metric-cumulative")
    series_paths(dom, "metric-windowed")
    assert not dom.find_all("svg", data_chart="calibration")

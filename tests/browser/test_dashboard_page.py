"""The monitoring dashboard in a real (headless) Chromium, served by the monitoring service's own routes.

The server is the one the monitoring service runs (``eddy.runtime.server.serve_http`` with
``dashboard_api``): the page's static files and the JSON API come from the real routes, and only the
monitors behind them are stand-ins answering ``sample_dashboard.json``, so the page is checked on its own:
charts drawn, tables filled and highlighted, errors shown, no JavaScript error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eddy.runtime.auth import ApiKeys
from eddy.runtime.observability import Health
from eddy.runtime.server import HttpServer, serve_http
from eddy.services.monitoring.dashboard import dashboard_api

from tests.browser.chromium import Element, artifacts_dir, parse_dom, render, require_chromium
from tests.dashboard_documents import estimating_monitor

SAMPLE = json.loads((Path(__file__).parent / "sample_dashboard.json").read_text())
CHARTS = ("throughput", "latency", "quality-accuracy", "data-drift", "prediction-drift", "dlq")
FAILURE = "monitoring state unavailable"
# The page writes bands as low, an en dash, high and signed errors with a minus sign, as typeset numbers.
DASH, MINUS = "\u2013", "\u2212"


class StandInMonitor:
    """What the dashboard routes read of a ``Monitor``: its document (the stand-in's may fail) and task."""

    def __init__(self, api: FakeApi, document: dict[str, Any]) -> None:
        self.api = api
        # A monitor before its first tick has no document: the route answers that it is warming up.
        self._document = {} if document.get("warming_up") else document
        self.contract = SimpleNamespace(task=document["task"])

    @property
    def document(self) -> dict[str, Any]:
        self.api.dashboard_requests += 1
        failing = self.api.fail_dashboard_after
        if failing is not None and self.api.dashboard_requests > failing:
            raise RuntimeError(FAILURE)
        return self._document


@dataclass
class FakeApi:
    """The monitors behind the routes; tests change them to provoke failures."""

    monitors: dict[str, StandInMonitor] = field(default_factory=dict)
    fail_dashboard_after: int | None = None  # answer 500 once this many dashboard requests succeeded
    dashboard_requests: int = 0

    def add(self, document: dict[str, Any]) -> None:
        self.monitors[document["stream"]] = StandInMonitor(self, document)


@dataclass
class DashboardServer:
    api: FakeApi
    http: HttpServer

    @property
    def url(self) -> str:
        return self.http.url


@pytest.fixture
def server() -> Iterator[DashboardServer]:
    require_chromium()
    api = FakeApi()
    api.add(SAMPLE)
    routes = dashboard_api(api.monitors)  # type: ignore[arg-type]
    http = serve_http("127.0.0.1", 0, Health("monitoring"), routes, ApiKeys())
    yield DashboardServer(api, http)
    http.stop(10)


def chart(dom: Element, name: str) -> Element:
    return dom.find("svg", data_chart=name)


def assert_no_js_error(dom: Element) -> None:
    box = dom.find(id="js-errors")
    assert "hidden" in box.attrs and not box.text.strip(), f"JavaScript error on the page: {box.text}"


def test_dashboard_renders_the_sample(server: DashboardServer) -> None:
    shot = artifacts_dir() / "dashboard-sample.png"
    dom = parse_dom(render(f"{server.url}/dashboard", screenshot=shot, size=(1280, 2300)))

    assert_no_js_error(dom)
    body = dom.find("body")
    assert body.attrs.get("data-ready") == "true", "the page never finished its first render"
    assert "hidden" in dom.find(id="error-banner").attrs, dom.find(id="error-banner").text

    status = dom.find(id="status").text
    assert "demo" in status and "binary" in status and "updated" in status
    for name in CHARTS:
        points = int(chart(dom, name).attrs["data-points"])
        assert points > 0, f"chart {name} drew nothing"
    # every quality metric of the sample gets a chart; both models draw (the challenger only once deployed)
    for metric in ("accuracy", "f1", "roc_auc", "log_loss"):
        assert len(chart(dom, f"quality-{metric}").find_all("path", **{"class": "series"})) == 2
    assert int(chart(dom, "quality-accuracy").attrs["data-points"]) == sum(
        v is not None for model in SAMPLE["series"]["quality"].values() for v in model["accuracy"]
    )
    assert chart(dom, "quality-accuracy").find_all("g", **{"class": "marker marker-promotion"})
    assert chart(dom, "data-drift").find_all("line", **{"class": "threshold"})

    alert = dom.find("tr", data_alert_id="demo:concept_drift:default")
    assert "concept_drift" in alert.text
    assert dom.find(id="alert-count").text == "1"

    # segment rows follow their model's row, champion first
    segments = [row for row in dom.find(id="models").find_all("tr") if "data-segment" in row.attrs]
    south, north = (next(row for row in segments if row.attrs["data-segment"] == s) for s in ("south", "north"))
    assert "biased" in south.classes, "the champion's south segment is far below its overall accuracy"
    assert "worse" in south.text
    assert "biased" not in north.classes
    assert sum("biased" in row.classes for row in segments) == 1, "the challenger's south is close to its overall"

    assert "drifting" in dom.find("tr", data_feature="region").classes
    assert "drifting" not in dom.find("tr", data_feature="x0").classes
    assert dom.find("tr", data_reason="schema").text.strip().endswith("10")

    assert shot.is_file() and shot.stat().st_size > 10_000, "the screenshot is missing or blank"


def test_api_failure_shows_the_error_banner(server: DashboardServer) -> None:
    server.api.fail_dashboard_after = 0
    dom = parse_dom(render(f"{server.url}/dashboard", screenshot=artifacts_dir() / "dashboard-api-500.png"))

    assert_no_js_error(dom)
    banner = dom.find(id="error-banner")
    assert "hidden" not in banner.attrs and "Could not load" in banner.text
    # The route's failure is answered as every eddy server answers a crash: 500, JSON, pointing to the log.
    assert "500" in banner.text and "internal error" in banner.text
    assert dom.find("body").attrs.get("data-ready") != "true"
    assert chart(dom, "throughput").attrs["data-points"] == "0"
    assert "waiting for data" in chart(dom, "throughput").text


def test_failure_after_data_keeps_the_last_data(server: DashboardServer) -> None:
    server.api.fail_dashboard_after = 1
    dom = parse_dom(render(f"{server.url}/dashboard"))

    assert_no_js_error(dom)
    assert server.api.dashboard_requests > 1, "the page did not poll again"
    assert dom.find("body").attrs.get("data-ready") == "true"
    banner = dom.find(id="error-banner")
    assert "hidden" not in banner.attrs and "last data" in banner.text
    assert int(chart(dom, "throughput").attrs["data-points"]) > 0


def test_unknown_stream_in_the_url_reports_the_404(server: DashboardServer) -> None:
    dom = parse_dom(render(f"{server.url}/dashboard?stream=nope"))

    assert_no_js_error(dom)
    banner = dom.find(id="error-banner")
    assert "hidden" not in banner.attrs and "404" in banner.text and "nope" in banner.text
    assert dom.find("option", value="nope") is not None


EMPTY_DOCUMENT = {
    "stream": "fresh",
    "task": "regression",
    "generated_at_ms": SAMPLE["generated_at_ms"],
    "tick_s": 1.0,
    "series": {"t": [], "throughput": {}, "latency_ms": {}, "quality": {}, "data_drift": {}, "prediction_drift": {}},
    "markers": [],
    "models": [],
    "drift": [],
    "alerts": [],
    "dlq": {"total": 0, "by_reason": {}},
}
# what the monitoring service answers before its first tick
WARMING_UP = {"stream": "fresh", "task": "regression", "warming_up": True}


@pytest.mark.parametrize("document", [EMPTY_DOCUMENT, WARMING_UP], ids=["empty", "warming-up"])
def test_a_stream_without_data_yet_renders_empty(server: DashboardServer, document: dict[str, Any]) -> None:
    server.api.add(document)
    dom = parse_dom(render(f"{server.url}/dashboard?stream=fresh"))

    assert_no_js_error(dom)
    assert dom.find("body").attrs.get("data-ready") == "true"
    assert "selected" in dom.find("option", value="fresh").attrs
    assert "stream fresh" in dom.find(id="status").text
    for name in ("throughput", "latency", "data-drift", "prediction-drift", "dlq"):
        assert chart(dom, name).attrs["data-points"] == "0"
        assert "waiting for data" in chart(dom, name).text
    assert "waiting for labeled data" in dom.find(id="quality-charts").text
    assert "no open alerts" in dom.find(id="alerts").text
    assert "hidden" in dom.find(id="estimated-section").attrs
    assert "no registry event seen yet" in dom.find(id="history").text


def variant(stream: str, **changes: Any) -> dict[str, Any]:
    """The sample as another stream, with ``changes`` to its top level and ``estimated`` per model."""
    document = json.loads(json.dumps(SAMPLE))
    estimated = changes.pop("estimated", {})
    document.update(stream=stream, **changes)
    for model in document["models"]:
        key = f"{model['model']}@{model['version']}"
        if key in estimated:
            model["estimated"] = estimated[key]
    return document


def test_estimated_quality_panel_shows_estimates_next_to_realized(server: DashboardServer) -> None:
    shot = artifacts_dir() / "dashboard-estimated-history.png"
    dom = parse_dom(render(f"{server.url}/dashboard", screenshot=shot, size=(1280, 4200)))

    assert_no_js_error(dom)
    section = dom.find(id="estimated-section")
    assert "hidden" not in section.attrs
    cards = section.find_all("div", **{"class": "estimate-card role-champion"})
    cards += section.find_all("div", **{"class": "estimate-card role-challenger"})
    assert [c.attrs["data-model"] for c in cards] == ["default@1", "challenger@1"], "champion first"
    champion, challenger = cards

    # the current estimate with its band; the champion's is below reference - threshold (0.912 - 0.05)
    accuracy = champion.find("div", data_metric="accuracy")
    assert "0.803" in accuracy.text and f"0.782{DASH}0.824" in accuracy.text and "n 1000" in accuracy.text
    assert "below" in accuracy.classes and "below the alert line" in accuracy.text
    assert "0.763" in champion.find("div", data_metric="f1").text
    facts = champion.find("p", **{"class": "facts"}).text
    assert "isotonic on 2000 labels" in facts and "reference accuracy 0.912" in facts and "alert below 0.862" in facts
    assert "0.874" in challenger.find("div", data_metric="accuracy").text
    assert f"0.853{DASH}0.895" in challenger.find("div", data_metric="accuracy").text
    assert "below" not in challenger.find("div", data_metric="accuracy").classes
    assert "once the first calibration window is full" in challenger.find("p", **{"class": "facts"}).text

    # recent windows, newest first: estimate, realized next to it, labeled share, the error once settled
    rows = [r for r in champion.find_all("tr") if "data-window" in r.attrs]
    assert [r.attrs["data-window"] for r in rows] == [str(i) for i in range(21, 13, -1)]
    settled = champion.find("tr", data_window="18")
    assert "settled" in settled.classes
    assert f"0.806 (0.785{DASH}0.827)" in settled.text and "0.813" in settled.text and "90%" in settled.text
    assert settled.text.strip().endswith(f"{MINUS}0.007"), settled.text
    labeling = champion.find("tr", data_window="19")
    assert "0.790" in labeling.text and "44%" in labeling.text and labeling.text.strip().endswith("pending")
    assert labeling.find("td", **{"class": "num partial"}).text == "0.790"

    south = champion.find("tr", data_segment="south")
    assert "biased" in south.classes and f"0.641 (0.601{DASH}0.681)" in south.text
    assert "biased" not in challenger.find("tr", data_segment="south").classes

    # estimated (dashed) and realized accuracy of both versions, and the champion's alert line
    estimated_chart = chart(dom, "estimated-accuracy")
    assert len(estimated_chart.find_all("path", **{"class": "series dashed"})) == 2
    assert len(estimated_chart.find_all("path", **{"class": "series"})) == 2
    estimated = [v for values in SAMPLE["series"]["estimated_accuracy"].values() for v in values]
    realized = [v for model in SAMPLE["series"]["quality"].values() for v in model["accuracy"]]
    assert int(estimated_chart.attrs["data-points"]) == sum(v is not None for v in estimated + realized)
    assert estimated_chart.find_all("line", **{"class": "threshold"})
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_production_history_names_each_period(server: DashboardServer) -> None:
    dom = parse_dom(render(f"{server.url}/dashboard"))

    assert_no_js_error(dom)
    history = dom.find(id="history")
    periods = [row for row in history.find_all("tr") if "data-period" in row.attrs]
    assert [int(r.attrs["data-period"]) for r in periods] == [p["from_ms"] for p in SAMPLE["history"]]
    assert dom.find(id="history-count").text == "4"
    registered, promoted, rolled_back, trial = periods
    assert "default@1" in registered.find("td", **{"class": "mono champion"}).text
    assert "registered by model_registry" in registered.text and "contract" in registered.text
    assert "46 h 0 min" in registered.text, "from 72 h to 26 h ago"
    assert "promoted by retraining" in promoted.text and "default@2" in promoted.text
    assert "shadow trial won" in promoted.text
    assert "evidence.contender_metric" in promoted.text and "0.9214" in promoted.text
    assert "rolled back by alice" in rolled_back.text and "probation: accuracy fell" in rolled_back.text
    assert "bar cause-rolled_back" in {b.attrs["class"] for b in rolled_back.find_all("div") if "bar" in b.classes}
    # the canary trial: still open, the challenger with its share of the traffic
    assert {"trial", "current"} <= trial.classes
    assert "challenger@1" in trial.find("td", **{"class": "challenger"}).text and "10% canary" in trial.text
    assert "→ now" in trial.text and "41 s" in trial.text
    assert trial.find_all("span", **{"class": "canary"}), "the canary stripe of the bar"
    assert all("trial" not in p.classes and "current" not in p.classes for p in (registered, promoted, rolled_back))


def test_versions_waiting_for_labels_say_so(server: DashboardServer) -> None:
    waiting = {
        "calibration": "binning",
        "reference_accuracy": None,
        "threshold": 0.05,
        "current": None,
        "segments": {},
        "windows": [],
    }
    # a long history: the page shows the latest periods and says how many it left out
    step = 3_600_000
    history = [
        {**SAMPLE["history"][0], "from_ms": SAMPLE["generated_at_ms"] - (25 - i) * step, "until_ms": None}
        for i in range(25)
    ]
    for before, after in pairwise(history):
        before["until_ms"] = after["from_ms"]
    server.api.add(
        variant(
            "waiting",
            history=history,
            estimated={
                "default@1": {**waiting, "calibration_labels": 40},
                "challenger@1": {**waiting, "calibration_labels": 150},
            },
        )
    )
    dom = parse_dom(render(f"{server.url}/dashboard?stream=waiting"))

    assert_no_js_error(dom)
    assert "hidden" not in dom.find(id="estimated-section").attrs
    champion = dom.find("div", data_model="default@1")
    assert "no estimate yet (needs 100 labels, has 40)" in champion.text
    assert not champion.find_all("div", **{"class": "tiles"})
    assert "binning on 40 labels" in champion.text and "no window closed yet" in champion.text
    assert "the first window of predictions is still filling" in dom.find("div", data_model="challenger@1").text
    periods = [row for row in dom.find(id="history").find_all("tr") if "data-period" in row.attrs]
    assert [int(p.attrs["data-period"]) for p in periods] == [p["from_ms"] for p in history[-20:]]
    assert "5 earlier periods not shown" in dom.find(id="history").text
    assert dom.find(id="history-count").text == "25"


def test_estimation_off_and_no_history_render_without_the_panels(server: DashboardServer) -> None:
    server.api.add(variant("plain", history=[], estimated={"default@1": None, "challenger@1": None}))
    dom = parse_dom(render(f"{server.url}/dashboard?stream=plain"))

    assert_no_js_error(dom)
    assert dom.find("body").attrs.get("data-ready") == "true"
    assert "hidden" in dom.find(id="estimated-section").attrs
    assert "no registry event seen yet" in dom.find(id="history").text
    assert dom.find(id="history-count").text == "0"
    assert int(chart(dom, "quality-accuracy").attrs["data-points"]) > 0


def test_a_real_monitors_document_renders_its_estimates_and_history(server: DashboardServer) -> None:
    """Not the hand-made sample: what ``Monitor`` answers, so the page and the handler agree on the contract."""
    document = {**json.loads(json.dumps(estimating_monitor().document)), "stream": "live"}
    server.api.add(document)
    dom = parse_dom(render(f"{server.url}/dashboard?stream=live"))

    assert_no_js_error(dom)
    assert dom.find("body").attrs.get("data-ready") == "true"
    card = dom.find("div", data_model="default@1")
    current = document["models"][0]["estimated"]["current"]["accuracy"]
    assert f"{current['value']:.3f}" in card.find("div", data_metric="accuracy").text
    assert "isotonic on 100 labels" in card.text and "reference accuracy" in card.text
    windows = document["models"][0]["estimated"]["windows"]
    assert len([r for r in card.find_all("tr") if "data-window" in r.attrs]) == len(windows)
    assert card.find_all("tr", data_segment="north") and card.find_all("tr", data_segment="south")
    assert int(chart(dom, "estimated-accuracy").attrs["data-points"]) > 0
    periods = [row for row in dom.find(id="history").find_all("tr") if "data-period" in row.attrs]
    assert len(periods) == 3 and "10% canary" in periods[1].text and "promoted by alice" in periods[2].text

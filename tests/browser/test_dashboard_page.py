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
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from eddy.runtime.auth import ApiKeys
from eddy.runtime.observability import Health
from eddy.runtime.server import HttpServer, serve_http
from eddy.services.monitoring.dashboard import dashboard_api

from tests.browser.chromium import Element, artifacts_dir, parse_dom, render, require_chromium

SAMPLE = json.loads((Path(__file__).parent / "sample_dashboard.json").read_text())
CHARTS = ("throughput", "latency", "quality-accuracy", "data-drift", "prediction-drift", "dlq")
FAILURE = "monitoring state unavailable"


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

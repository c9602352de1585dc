"""The dashboard's label freshness panel in headless Chromium: quantiles, the lag, its threshold, the alert.

The documents are what a real ``Monitor`` answers (learning lagging past the contract's threshold with its
``learning_lag`` alert open, then caught up), so the page and the handler agree on the ``freshness`` entry;
the server and the stand-in monitors are the page tests' own (``test_dashboard_page``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from eddy.contracts.monitoring import parse_monitoring
from eddy.services.monitoring.handlers import Monitor

from tests.browser.chromium import Element, artifacts_dir, parse_dom, render
from tests.browser.test_dashboard_page import SAMPLE, DashboardServer, assert_no_js_error, server  # noqa: F401
from tests.records import demo_contract, labeled_example, record
from tests.unit.services.test_openapi_documents import APPS, schema_validator, served_document

T0 = 1_795_400_000_000  # ms


def lagging_monitor(max_lag: str | None = "2s") -> tuple[Monitor, list[float]]:
    """The demo stream's monitor: label 1 served, labels 2 and 3 learned after it, 5 s later (lag 5 s)."""
    contract = demo_contract()
    freshness = None if max_lag is None else parse_monitoring({"freshness": {"max_lag": max_lag}}, {}).freshness
    contract = dataclasses.replace(contract, monitoring=dataclasses.replace(contract.monitoring, freshness=freshness))
    now = [T0 / 1000]
    monitor = Monitor(contract, clock=lambda: now[0])

    def labeled(i: int, label_ms: int, joined_ms: int) -> dict[str, Any]:
        return labeled_example(i, event_time_ms=label_ms - 100, label_time_ms=label_ms, joined_at_ms=joined_ms)

    monitor([record("demo.labeled", labeled(1, T0, T0 + 150), offset=1)])
    monitor.on_snapshot({"model_name": "default", "model_version": 1, "newest_label_ms": T0, "created_at_ms": T0 + 400})
    now[0] += 5
    monitor([record("demo.labeled", labeled(i, T0 + i * 1000, T0 + i * 1000 + 250), offset=i) for i in (2, 3)])
    monitor.tick(now[0])
    return monitor, now


def document_of(monitor: Monitor, stream: str) -> dict[str, Any]:
    return {**json.loads(json.dumps(monitor.document)), "stream": stream}


def panel(dom: Element) -> Element:
    return dom.find(id="freshness-section")


def tile(dom: Element, name: str) -> Element:
    return panel(dom).find("div", data_freshness=name)


def test_a_lagging_learner_shows_its_lag_threshold_and_open_alert(server: DashboardServer) -> None:  # noqa: F811
    monitor, _ = lagging_monitor()
    document = document_of(monitor, "lagging")
    assert document["freshness"]["status"] == "lagging", "the scenario itself"
    _, openapi = served_document(APPS["monitoring dashboard"]())
    schema_validator(openapi, "Dashboard").validate(document)
    server.api.add(document)
    shot = artifacts_dir() / "dashboard-freshness-lagging.png"
    dom = parse_dom(render(f"{server.url}/dashboard?stream=lagging", screenshot=shot, size=(1280, 2600)))

    assert_no_js_error(dom)
    assert "hidden" not in panel(dom).attrs
    card = dom.find(id="freshness")
    assert card.attrs["data-status"] == "lagging" and card.attrs["data-model"] == "default@1"
    # label → learned: 150, 250 and 250 ms; label → served: the one snapshot, 400 ms after its label
    learned = tile(dom, "learned").text
    assert "p50 250 ms" in learned and "p99 250 ms" in learned and "last 3" in learned
    assert "p50 400 ms" in tile(dom, "served").text and "last 1" in tile(dom, "served").text
    lag = tile(dom, "lag")
    assert "lagging" in lag.classes and "5 s" in lag.text and "alert past 2 s" in lag.text and "lagging" in lag.text
    alert = card.find("p", **{"class": "lag-alert firing"})
    assert "learning_lag alert firing since" in alert.text and "(5 s > 2 s)" in alert.text
    assert shot.is_file() and shot.stat().st_size > 10_000, "the screenshot is missing or blank"


def test_a_learner_that_caught_up_shows_no_lag(server: DashboardServer) -> None:  # noqa: F811
    monitor, now = lagging_monitor()
    monitor.on_snapshot({"model_name": "default", "model_version": 1, "newest_label_ms": T0 + 3000,
                         "created_at_ms": T0 + 5_200})  # fmt: skip
    monitor([record("demo.validated", {"event_id": "v"}, offset=1)])  # the alert resolves with the next batch
    monitor.tick(now[0])
    server.api.add(document_of(monitor, "caught-up"))
    dom = parse_dom(render(f"{server.url}/dashboard?stream=caught-up"))

    assert_no_js_error(dom)
    assert dom.find(id="freshness").attrs["data-status"] == "ok"
    lag = tile(dom, "lag")
    assert "lagging" not in lag.classes and "0 s" in lag.text and "ok" in lag.text
    assert "last 2" in tile(dom, "served").text
    assert "no learning_lag alert open" in panel(dom).find("p", **{"class": "lag-alert"}).text


def test_without_a_threshold_the_panel_says_no_alert(server: DashboardServer) -> None:  # noqa: F811
    monitor, _ = lagging_monitor(max_lag=None)
    server.api.add(document_of(monitor, "unwatched"))
    dom = parse_dom(render(f"{server.url}/dashboard?stream=unwatched"))

    assert_no_js_error(dom)
    assert dom.find(id="freshness").attrs["data-status"] == "unwatched"
    assert "no alert: the contract sets no monitoring.freshness.max_lag" in tile(dom, "lag").text
    assert "learning_lag alert off" in panel(dom).text


def test_before_any_label_and_without_the_entry(server: DashboardServer) -> None:  # noqa: F811
    server.api.add({**SAMPLE, "stream": "no-label", "freshness": None})
    dom = parse_dom(render(f"{server.url}/dashboard?stream=no-label"))
    assert_no_js_error(dom)
    assert "hidden" not in panel(dom).attrs and "no label learned yet" in panel(dom).text

    # The sample has no freshness key (an older service): no empty panel.
    dom = parse_dom(render(f"{server.url}/dashboard"))
    assert_no_js_error(dom)
    assert "hidden" in panel(dom).attrs


def test_an_alert_not_yet_resolved_after_the_lag_closed_says_so(server: DashboardServer) -> None:  # noqa: F811
    """The learner caught up and no record has arrived since: the lag is 0, the alert is judged with the next batch."""
    monitor, now = lagging_monitor()
    monitor.on_snapshot({"model_name": "default", "model_version": 1, "newest_label_ms": T0 + 3000,
                         "created_at_ms": T0 + 5_200})  # fmt: skip
    monitor.tick(now[0])
    document = document_of(monitor, "quiet")
    assert document["freshness"]["lag_s"] == 0.0 and [a["kind"] for a in document["alerts"]] == ["learning_lag"]
    server.api.add(document)
    dom = parse_dom(render(f"{server.url}/dashboard?stream=quiet"))

    assert_no_js_error(dom)
    assert dom.find(id="freshness").attrs["data-status"] == "ok"
    alert = panel(dom).find("p", **{"class": "lag-alert firing"})
    assert "still open: the lag is back under the threshold" in alert.text

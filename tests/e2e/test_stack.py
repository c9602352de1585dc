"""The whole stack under ``eddy up``, end to end, including SIGKILL of services mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics
from eddy.services.learning import checkpoint
from eddy.stack.up import pid_alive, read_stack, service_health

from tests.browser.chromium import artifacts_dir, find_chromium, parse_dom, render
from tests.conftest import service_env
from tests.helpers import (
    latest_snapshot_learned,
    produce_values,
    read_topic,
    sample_events,
    sample_labels,
    wait_until,
)

pytestmark = pytest.mark.e2e

SERVICES = ("ingestion", "validation", "inference", "learning", "monitoring", "retraining")


def eddy_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eddy.cli.main", *args], env=env, capture_output=True, timeout=120, cwd=REPO_ROOT
    )


@pytest.fixture()
def stack(settings: Settings, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    state = tmp_path / "state"
    # A long checkpoint interval makes sure a SIGKILL lands after output the last checkpoint does not cover.
    env = service_env(
        settings, EDDY_STATE_DIR=str(state), EDDY_SNAPSHOT_INTERVAL_S="0.5", EDDY_CHECKPOINT_INTERVAL_S="10"
    )
    with open(tmp_path / "up.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "eddy.cli.main", "up"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
    try:

        def healthy() -> bool:
            doc = read_stack(state)
            if not doc or not doc["ready"]:
                return False
            return all(service_health(doc["services"][s]["url"]).get("status") == "ok" for s in SERVICES)

        wait_until(healthy, 60, what="every service healthy")
        yield env, state
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        print((tmp_path / "up.log").read_text()[-2000:])
        for name in SERVICES:
            path = state / "logs" / f"{name}.log"
            if path.exists():
                errors = [line for line in path.read_text().splitlines() if '"level": "error"' in line]
                print(name, "errors:", errors[-5:])
        assert code == 0


def test_5000_events_then_kill_inference_and_learning(stack: tuple[dict[str, str], Path], settings: Settings) -> None:
    env, state = stack
    (stream,) = settings.streams
    topics = StreamTopics(stream)

    status = json.loads(eddy_cli(env, "status", "--json").stdout)
    assert status["bootstrap_servers"] == settings.bootstrap_servers
    assert status["schema_registry_url"] == settings.schema_registry_url
    assert {s for s, v in status["services"].items() if v["health"]["status"] == "ok"} >= set(SERVICES)
    assert all(v["url"].startswith("http://127.0.0.1:") for s, v in status["services"].items() if s in SERVICES)

    # Phase 1: 5,000 events and their labels; exactly one prediction, one labeled example, one learning each.
    produce_values(settings, topics.events, sample_events(0, 5000))
    produce_values(settings, topics.feedback, sample_labels(0, 5000))
    predictions = read_topic(settings, topics.predictions, expect=5000, timeout_s=120)
    labeled = read_topic(settings, topics.labeled, expect=5000, timeout_s=120)
    wait_until(lambda: latest_snapshot_learned(settings, stream) == 5000, 60, what="a snapshot with 5,000 learned")
    predictions = read_topic(settings, topics.predictions, timeout_s=30, quiet_s=2)
    labeled = read_topic(settings, topics.labeled, timeout_s=30, quiet_s=2)
    assert len(predictions) == 5000 and len({p["event_id"] for p in predictions}) == 5000
    assert len(labeled) == 5000 and len({x["event_id"] for x in labeled}) == 5000
    assert {p["event_id"] for p in predictions} == {f"ev{i}" for i in range(5000)}

    checkpoint_file = checkpoint.checkpoint_path(state, stream, "default")
    wait_until(checkpoint_file.exists, 30, what="a learner checkpoint after phase 1")

    # Phase 2: load runs while inference and learning are SIGKILLed; the supervisor restarts them.
    def feed() -> None:
        for start in range(5000, 10000, 250):
            produce_values(settings, topics.events, sample_events(start, 250))
            if start >= 5250:
                produce_values(settings, topics.feedback, sample_labels(start - 250, 250))
            time.sleep(0.2)
        produce_values(settings, topics.feedback, sample_labels(9750, 250))

    feeder = threading.Thread(target=feed)
    feeder.start()
    wait_until(lambda: latest_snapshot_learned(settings, stream) > 5500, 30, what="phase-2 labels being learned")
    learned_at_kill = latest_snapshot_learned(settings, stream)
    before = read_stack(state)
    assert before is not None
    killed = {name: before["services"][name]["pid"] for name in ("inference", "learning")}
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)
    feeder.join(60)

    def restarted() -> bool:
        doc = read_stack(state) or {"services": {}}
        return all(
            doc["services"][n]["restarts"] >= 1
            and pid_alive(doc["services"][n]["pid"])
            and doc["services"][n]["pid"] != p
            for n, p in killed.items()
        )

    wait_until(restarted, 30, what="inference and learning restarted by the supervisor")
    wait_until(lambda: latest_snapshot_learned(settings, stream) >= 10000, 150, interval_s=2, what="10,000 learned")
    assert latest_snapshot_learned(settings, stream) == 10000, "a label was learned twice"

    predictions = read_topic(settings, topics.predictions, timeout_s=60, quiet_s=2)
    predicted = Counter(p["event_id"] for p in predictions)
    missing = {f"ev{i}" for i in range(10000)} - set(predicted)
    assert not missing, f"{len(missing)} events never predicted, e.g. {sorted(missing)[:5]}"
    # Inference hot-swapped the 5,000-label snapshot, and a restarted replica caught up on it before serving.
    stale = [p for p in predictions if int(p["event_id"][2:]) >= 5000 and p["model_learned"] < 5000]
    assert not stale, f"{len(stale)} phase-2 predictions served by an older snapshot, e.g. {stale[0]}"
    labeled = read_topic(settings, topics.labeled, timeout_s=60, quiet_s=2)
    assert {x["event_id"] for x in labeled} == {f"ev{i}" for i in range(10000)}
    assert len(labeled) == 10000, "the restarted learner wrote a labeled example twice"
    log_lines = [json.loads(line) for line in (state / "logs" / "learning.log").read_text().splitlines()]
    restored = [line["learned"] for line in log_lines if line["msg"] == "restored checkpoint"]
    assert restored, "the restarted learner did not use its checkpoint"
    if restored[-1] < learned_at_kill:
        # Output past the checkpoint existed: the restarted learner must have found it and not rewritten it.
        assert any(line["msg"] == "labeled examples already written after the checkpoint" for line in log_lines)
    print(f"duplicate predictions after kill -9 (at-least-once replay): {sum(predicted.values()) - len(predicted)}")


def own_broker(broker_kind: str) -> str:
    """The broker a test's own `eddy up` starts: the tier's, or the default beside an external one."""
    return "kafka" if broker_kind == "kafka" else "tansu"


def test_quick_start_demo_shows_predictions_within_60s(tmp_path: Path, broker_kind: str) -> None:
    """The README's first command, fully embedded: predictions flow within 60 s of `eddy up --demo`.

    On the Kafka tier it is `eddy up --demo --broker kafka`: the same stack on a local Apache Kafka.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
    env["EDDY_STATE_DIR"] = str(tmp_path / "state")
    started = time.monotonic()
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "eddy.cli.main", "up", "--demo", "--broker", own_broker(broker_kind)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        wait_until(lambda: (read_stack(tmp_path / "state") or {}).get("ready"), 60, what="the stack to be ready")
        tail = eddy_cli(env, "tail", "demo.predictions", "--max", "100", "--timeout", "60")
        elapsed = time.monotonic() - started
        records = [json.loads(line) for line in tail.stdout.splitlines()]
        assert len(records) == 100, tail.stderr
        assert elapsed < 60
        assert all(r["stream"] == "demo" and r["model_name"] == "default" for r in records)
        check_monitoring(env, tmp_path / "state")
        down = eddy_cli(env, "down")
        assert down.returncode == 0 and b"eddy stopped" in down.stdout
        assert up.wait(30) == 0
    finally:
        if up.poll() is None:
            up.kill()
        print((tmp_path / "up.log").read_text()[-2000:])


def test_no_process_outlives_a_killed_eddy_up(tmp_path: Path, broker_kind: str) -> None:
    """SIGKILL of `eddy up` takes its broker (every Kafka node, or Tansu) and every service with it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
    state = tmp_path / "state"
    env["EDDY_STATE_DIR"] = str(state)
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "eddy.cli.main", "up", "--broker", own_broker(broker_kind)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        wait_until(lambda: (read_stack(state) or {}).get("ready"), 60, what="the stack to be ready")
        doc = read_stack(state)
        assert doc is not None and doc["broker"] == own_broker(broker_kind)
        brokers = list(doc["broker_pids"])
        services = [s["pid"] for s in doc["services"].values() if s["pid"]]
        assert brokers and all(pid_alive(pid) for pid in brokers + services)
        up.kill()
        up.wait(10)
        wait_until(lambda: not any(pid_alive(pid) for pid in brokers + services), 20, what="every child to exit")
    finally:
        if up.poll() is None:
            up.kill()
        print((tmp_path / "up.log").read_text()[-2000:])


def check_estimates(env: dict[str, str], board: Callable[[], dict[str, Any]]) -> None:
    """The champion's label-free estimate: on the dashboard with its band, in `eddy status`, and the history."""

    def estimated() -> dict[str, Any] | None:
        champion = next((m for m in board()["models"] if m["role"] == "champion"), None)
        current = (champion or {}).get("estimated") or {}
        return current if current.get("current") else None

    wait_until(lambda: estimated() is not None, 90, what="the champion's first estimated window")
    found = estimated()
    assert found is not None
    accuracy = found["current"]["accuracy"]
    assert 0 <= accuracy["low"] <= accuracy["value"] <= accuracy["high"] <= 1 and accuracy["n"] == 1000
    assert found["calibration"] == "isotonic" and found["calibration_labels"] >= 100
    (first, *_) = board()["history"]
    assert first["champion"] == "default@1" and first["cause"] in ("registered", "synced"), first
    shown = eddy_cli(env, "status").stdout.decode()
    assert "estimated before labels: accuracy" in shown, shown


def check_freshness(env: dict[str, str], state: Path, board: Callable[[], dict[str, Any]]) -> None:
    """Issue 23: label freshness in learning's and inference's metrics, on the dashboard and in `eddy status`."""
    import httpx

    def served() -> dict[str, Any] | None:
        found = board().get("freshness")
        return found if found and found["label_to_served_s"]["n"] else None

    wait_until(lambda: served() is not None, 30, what="the champion's first served snapshot with labels")
    found = served()
    assert found is not None and found["max_lag_s"] == 30.0 and found["label_to_learned_s"]["p50"] is not None
    services = read_stack(state)["services"]
    for service, metric in (
        ("learning", "eddy_label_to_learned_seconds"),
        ("inference", "eddy_label_to_served_seconds"),
    ):
        text = httpx.get(f"{services[service]['url']}/metrics", timeout=5).text
        counts = [line for line in text.splitlines() if line.startswith(f"{metric}_count") and 'stream="demo"' in line]
        assert counts and float(counts[0].rsplit(" ", 1)[1]) > 0, (service, metric)
    assert "freshness default v" in eddy_cli(env, "status").stdout.decode()


def check_monitoring(env: dict[str, str], state: Path) -> None:
    """The running demo's monitoring: window quality in `eddy status`, and a live dashboard in a real browser."""
    url = read_stack(state)["services"]["monitoring"]["url"]

    def board() -> dict:
        import httpx

        return httpx.get(f"{url}/api/dashboard", params={"stream": "demo"}, timeout=5).json()

    wait_until(lambda: board().get("models") and board()["models"][0]["metrics"], 60, what="window quality")
    doc = board()
    assert doc["models"][0]["role"] == "champion" and "accuracy" in doc["models"][0]["metrics"]
    assert set(doc["models"][0]["segments"]) <= {"north", "south", "east", "west"}
    assert any(doc["series"]["throughput"]["predictions"])
    status = eddy_cli(env, "status")
    shown = status.stdout.decode()
    assert status.returncode == 0 and "stream demo (binary)" in shown and "open alerts:" in shown
    assert "accuracy" in shown, shown
    check_estimates(env, board)
    check_freshness(env, state, board)
    if find_chromium() is None:
        pytest.skip("no Chromium for the live dashboard check: apt-get install -y chromium")
    dom = parse_dom(render(f"{url}/dashboard", artifacts_dir() / "dashboard-live.png"))
    assert dom.find("body").attrs.get("data-ready") == "true"
    for name in ("throughput", "latency", "quality-accuracy"):
        charts = [c for c in dom.find_all("svg") if c.attrs.get("data-chart") == name]
        assert charts and int(charts[0].attrs["data-points"]) > 0, name

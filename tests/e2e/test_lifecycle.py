"""The closed loop on the running demo stack: drift → retrain → shadow trial → promotion, then a user rollback.

`eddy up --demo` with the drift early and the rate up, so that the whole loop
fits in a test: monitoring's alert makes retraining build a challenger, the
registry registers it, the trial promotes it, and the dashboard shows the
promotion. Then `eddy models show` reaches the served version's lineage, and
`eddy models rollback` is what inference answers with 2 s later. Retraining is
killed with SIGKILL during the trial: the registry stays consistent and the
restarted service, replaying from the beginning, decides nothing twice. Last,
`eddy models history` tells the whole story from `eddy.model-events`: the first
champion, the canary trial (`--at` a time inside it names the champion, the
challenger and its 10% share), the promotion with the trial's evidence, and the
user's rollback.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.core.settings import REPO_ROOT
from eddy.core.times import iso_utc
from eddy.stack.up import read_stack

from tests.e2e.test_stack import eddy_cli, own_broker
from tests.helpers import wait_until

pytestmark = pytest.mark.e2e


def champion(env: dict[str, str]) -> str | None:
    """The demo stream's champion per `eddy models list` (None while the registry is not answering yet)."""
    listed = eddy_cli(env, "models", "list", "demo", "--json")
    if listed.returncode != 0:
        print(listed.stderr.decode()[-300:])
        return None
    current: str = json.loads(listed.stdout)["champion"]
    return current


def history(env: dict[str, str], *options: str) -> list[dict[str, Any]]:
    """`eddy models history demo --json` with ``options``: the periods it names."""
    result = eddy_cli(env, "models", "history", "demo", "--json", *options)
    assert result.returncode == 0, result.stderr.decode()[-1000:]
    periods: list[dict[str, Any]] = json.loads(result.stdout)
    return periods


def history_text(env: dict[str, str], *options: str) -> list[str]:
    """`eddy models history demo` with ``options``: its lines for people."""
    result = eddy_cli(env, "models", "history", "demo", *options)
    assert result.returncode == 0, result.stderr.decode()[-1000:]
    return result.stdout.decode().splitlines()


def predict(state: Path, event_id: str) -> dict[str, Any]:
    inference = read_stack(state)["services"]["inference"]["url"]
    base = httpx.get(f"{inference}/healthz", timeout=5).json()["predict_url"]
    event = {"event_id": event_id, "x0": 5.0, "x1": 5.0, "x2": 5.0, "region": "north"}
    answer = httpx.post(f"{base}/v1/streams/demo/predict", json=event, timeout=10)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()["results"][0]
    return result


def test_drift_is_answered_by_a_promoted_challenger_and_a_rollback_is_served_within_2s(
    tmp_path: Path, broker_kind: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDDY_")}
    state = tmp_path / "state"
    env["EDDY_STATE_DIR"] = str(state)
    argv = ["up", "--demo", "--rate", "300", "--drift-at", "4500", "--label-delay", "0.5"]
    argv += ["--broker", own_broker(broker_kind)]
    with open(tmp_path / "up.log", "wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "eddy.cli.main", *argv], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
    try:
        wait_until(lambda: (read_stack(state) or {}).get("ready"), 60, what="the stack to be ready")
        registry_url = read_stack(state)["services"]["model_registry"]["url"]

        def registry(path: str) -> dict[str, Any]:
            answer: dict[str, Any] = httpx.get(f"{registry_url}{path}", params={"stream": "demo"}, timeout=5).json()
            return answer

        # Kill -9 of retraining as soon as its challenger is registered (its trial is running): the
        # supervisor restarts it, it replays its topics from the beginning, and it neither registers
        # the challenger twice nor decides twice.
        def challenger_registered() -> bool:
            try:
                return len(registry("/api/models").get("versions", [])) > 1
            except httpx.HTTPError:
                return False  # the registry is still starting (it answers 503, or not at all)

        wait_until(challenger_registered, 150, interval_s=0.2, what="a challenger")
        os.kill(read_stack(state)["services"]["retraining"]["pid"], signal.SIGKILL)
        wait_until(lambda: read_stack(state)["services"]["retraining"]["restarts"] >= 1, 30, what="a restart")
        wait_until(lambda: champion(env) not in (None, "default@1"), 120, interval_s=2, what="a promotion")
        promoted = champion(env)
        assert promoted is not None
        time.sleep(5)  # time for a replaying retraining service to (wrongly) act again
        listed = registry("/api/models")
        assert [v["version"] for v in listed["versions"]] == ["default@1", "default@2"], listed
        assert sum(v["alias"] == "champion" for v in listed["versions"]) == 1, listed
        promotions = [e for e in registry("/api/audit")["events"] if e["event_type"] == "promoted"]
        assert len(promotions) == 1, promotions

        # The dashboard shows the promotion; the registry's audit says why, with the trial's evidence.
        board_url = read_stack(state)["services"]["monitoring"]["url"]

        def promotion_marked() -> bool:
            board = httpx.get(f"{board_url}/api/dashboard", params={"stream": "demo"}, timeout=5).json()
            return any(m["kind"] == "promotion" and promoted in m["label"].replace(" v", "@") for m in board["markers"])

        wait_until(promotion_marked, 30, what="the promotion marker on the dashboard")

        # Lineage of the served version: its parent chain and the labeled offsets it was trained on.
        served = predict(state, "lineage-1")
        key = f"{served['model_name']}@{served['model_version']}"

        def shown() -> dict[str, Any]:
            result = eddy_cli(env, "models", "show", "demo", key, "--json")
            assert result.returncode == 0, result.stderr
            doc: dict[str, Any] = json.loads(result.stdout)
            return doc

        # The online offsets it learned from reach the registry from learning's snapshots (throttled).
        wait_until(lambda: shown()["online_ranges"], 30, what=f"online lineage of {key}")
        version = shown()
        assert version["key"] == key
        ancestors = [a["version"] for a in version["lineage"]]
        if key == "default@1":
            assert ancestors == []
        else:
            assert ancestors[-1] == "default@1", ancestors
            assert version["training_offsets"] and version["training_offsets"][0]["topic"] == "demo.labeled"
            assert version["metrics"]
            assert any(e["event_type"] == "registered" for e in version["audit"]), version["audit"]

        # A user's rollback is what inference answers with 2 s later.
        rollback = eddy_cli(env, "models", "rollback", "demo", "--reason", "e2e test")
        assert rollback.returncode == 0, rollback.stderr
        done = time.monotonic()
        restored = champion(env)
        assert restored not in (None, promoted)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - done)))
        answers = {f"{a['model_name']}@{a['model_version']}" for a in (predict(state, f"after-{i}") for i in range(5))}
        assert answers == {restored}, (answers, restored)
        assert_history_across_promotion_and_rollback(env, promoted, restored)
    finally:
        eddy_cli(env, "down")
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
        print((tmp_path / "up.log").read_text()[-2000:])
        for name in ("retraining", "model_registry"):
            log_path = state / "logs" / f"{name}.log"
            if log_path.exists():
                print(name, log_path.read_text()[-1500:])


def assert_history_across_promotion_and_rollback(env: dict[str, str], promoted: str, restored: str | None) -> None:
    """`eddy models history` names each period of the run above: who answered, since when, why and by whom."""
    periods = history(env)
    table = [(p["champion"], p["challenger"], p["canary"], p["cause"], p["by"]) for p in periods]
    user = f"user:{getpass.getuser()}"
    assert table == [
        ("default@1", None, 0.0, "registered", "model_registry"),  # the contract's first version
        ("default@1", "default@2", 0.1, "registered", "model_registry"),  # the canary trial (contract: 10%)
        ("default@2", None, 0.0, "promoted", "retraining"),  # the trial's verdict
        ("default@1", None, 0.0, "rolled_back", user),  # `eddy models rollback` above
    ], table
    assert (promoted, restored) == ("default@2", "default@1")
    first, trial, champion_period, rollback = periods
    # Periods follow each other without a gap; only the last one is open.
    assert [p["until_ms"] for p in periods[:-1]] == [p["from_ms"] for p in periods[1:]], periods
    assert rollback["until_ms"] is None and all(p["from_ms"] < p["until_ms"] for p in periods[:-1]), periods
    assert first["evidence"]["reason"] == "contract"
    assert trial["evidence"]["parent"] == "default@1" and trial["evidence"]["reason"], trial
    # The promotion carries the trial's evidence: the paired comparison retraining decided on.
    evidence = champion_period["evidence"]
    assert evidence["previous"] == "default@1" and evidence["request"], evidence
    verdict = evidence["evidence"]
    assert verdict["decision"] == "promote" and verdict["significant"] and verdict["margin_met"], verdict
    assert (verdict["champion"], verdict["contender"]) == ("default@1", "default@2"), verdict
    assert verdict["contender_metric"] > verdict["champion_metric"] and verdict["pairs"] >= verdict["needed"], verdict
    assert rollback["evidence"]["from"] == "default@2" and rollback["evidence"]["reason"] == "e2e test", rollback

    # The text form names the same versions, in the same order.
    lines = history_text(env)
    assert len(lines) == 4, lines
    assert "default@1 answers  registered by model_registry (reason: contract)" in lines[0], lines
    assert "default@1 answers, default@2 answers 10%  registered by model_registry" in lines[1], lines
    assert "default@2 answers  promoted by retraining" in lines[2], lines
    assert f"default@1 answers  rolled_back by {user} (reason: e2e test)" in lines[3], lines
    assert lines[3].split("  ")[0].endswith(" .. now"), lines

    # --at a time in the middle of the canary trial (ISO 8601) names the champion and the canary share.
    middle = (trial["from_ms"] + trial["until_ms"]) // 2
    assert history(env, "--at", iso_utc(middle)) == [trial]
    (line,) = history_text(env, "--at", iso_utc(middle))
    assert "default@1 answers, default@2 answers 10%" in line, line
    # --at a time in the promoted period (epoch ms) names the promoted version, and nothing else.
    middle = (champion_period["from_ms"] + champion_period["until_ms"]) // 2
    assert history(env, "--at", str(middle)) == [champion_period]

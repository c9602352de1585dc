"""Service processes against the real broker: HTTP gateway, SIGTERM, CLI round trips and errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics

from tests.conftest import service_env
from tests.helpers import create_topics, read_topic, service

pytestmark = pytest.mark.integration


def eddy(settings: Settings, *args: str, stdin: bytes | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "eddy.cli.main", *args],
        env=service_env(settings, **env),
        input=stdin,
        capture_output=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_gateway_accepts_rejects_and_acknowledges(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    with service("ingestion", settings, tmp_path) as (proc, url, _):
        events = [{"event_id": f"h{i}", "x0": 1, "x1": 2, "x2": 3} for i in range(20)]
        r = httpx.post(f"{url}/v1/streams/{stream}/events", json=events, timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 20
        lines = b'{"x0": 1, "x1": 2, "x2": 3}\n{"x0": "high", "x1": 2, "x2": 3}\n'
        r = httpx.post(f"{url}/v1/streams/{stream}/events", content=lines, timeout=10)
        assert r.status_code == 207
        body = r.json()
        assert body["results"][0]["status"] == "accepted" and len(body["results"][0]["event_id"]) == 36
        assert "expected double" in body["results"][1]["error"]
        r = httpx.post(f"{url}/v1/streams/{stream}/feedback", json=[{"event_id": "h1", "label": True}], timeout=10)
        assert r.status_code == 200
        assert httpx.post(f"{url}/v1/streams/nope/events", json=[{}]).status_code == 404
        bad = httpx.post(f"{url}/v1/streams/{stream}/events", content=b"{not json")
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
        too_many = httpx.post(f"{url}/v1/streams/{stream}/events", json=[{}] * 10_001, timeout=30)
        assert too_many.status_code == 413
        assert httpx.get(f"{url}/metrics").text.count("eddy_ingested_total") > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    ids = {e["event_id"] for e in read_topic(settings, StreamTopics(stream).events, expect=21, timeout_s=20)}
    assert {f"h{i}" for i in range(20)} <= ids and len(ids) == 21
    (fb,) = read_topic(settings, StreamTopics(stream).feedback, expect=1, timeout_s=20)
    assert fb["event_id"] == "h1" and fb["label"] is True


@pytest.mark.parametrize("name", ["validation", "inference", "learning", "monitoring", "retraining"])
def test_sigterm_stops_cleanly_with_exit_0(name: str, settings: Settings, tmp_path: Path) -> None:
    create_topics(settings)
    with service(name, settings, tmp_path) as (proc, url, _):
        health = httpx.get(f"{url}/healthz").json()
        assert health["service"] == name
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_cli_produce_feedback_and_tail(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    rows = [{"event_id": f"c{i}", "x0": i % 10, "x1": 1.5, "x2": 2.5, "region": "west"} for i in range(30)]
    lines = "\n".join(json.dumps(r) for r in rows) + '\n{"x0": 1, "colour": "red"}\n'
    (tmp_path / "events.jsonl").write_text(lines)
    done = eddy(settings, "produce", stream, str(tmp_path / "events.jsonl"))
    assert done.returncode == 1
    assert b"produced 30 records" in done.stdout
    assert b"line 31: rejected: unknown field 'colour'" in done.stderr
    csv = tmp_path / "labels.csv"
    csv.write_text("event_id,label\n" + "".join(f"c{i},{i % 2}\n" for i in range(30)))
    assert eddy(settings, "feedback", stream, str(csv)).returncode == 0
    out = eddy(settings, "tail", StreamTopics(stream).events, "--from-beginning", "--max", "30", "--timeout", "30")
    assert out.returncode == 0, out.stderr
    decoded = [json.loads(line) for line in out.stdout.splitlines()]
    assert sorted(d["event_id"] for d in decoded) == sorted(r["event_id"] for r in rows)
    dlq = eddy(
        settings, "tail", StreamTopics(stream).dlq, "--from-beginning", "--max", "1", "--timeout", "30", "--meta"
    )
    (letter,) = [json.loads(line) for line in dlq.stdout.splitlines()]
    assert "colour" in letter["value"]["dlq"]["error.message"]
    piped = eddy(settings, "produce", stream, "-", stdin=b'{"x0": 2, "x1": 2, "x2": 2}\n')
    assert piped.returncode == 0 and b"produced 1 records" in piped.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["produce", "nope", "x.jsonl"], {}, "unknown stream 'nope'"),
        (["produce", "{stream}", "/does/not/exist.jsonl"], {}, "cannot read /does/not/exist.jsonl"),
        (["tail", "no.such.topic", "--max", "1"], {}, "no topic 'no.such.topic'"),
        (
            ["produce", "{stream}", "{file}"],
            {"EDDY_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
            "cannot reach Kafka at 127.0.0.1:1",
        ),
        (["streams", "validate", "/nope.yaml"], {}, "cannot read contract"),
    ],
)
def test_cli_user_errors_are_one_line(
    settings: Settings, tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    (stream,) = settings.streams
    (tmp_path / "ok.jsonl").write_text('{"x0": 1, "x1": 1, "x2": 1}\n')
    argv = [a.format(stream=stream, file=tmp_path / "ok.jsonl") for a in args]
    done = eddy(settings, *argv, **env)
    assert done.returncode == 1, done.stderr  # failures while running; 2 is for a wrong command line
    err = done.stderr.decode().strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_cli_dlq_show_and_replay(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    (tmp_path / "bad.jsonl").write_text('{"x0": 1, "colour": "red"}\n')
    eddy(settings, "produce", stream, str(tmp_path / "bad.jsonl"))
    shown = eddy(settings, "dlq", stream, "--max", "5", "--json")
    assert shown.returncode == 0, shown.stderr
    (entry,) = [json.loads(line) for line in shown.stdout.splitlines()]
    assert entry["reason"] == "rejected" and "colour" in entry["error_message"]
    replay = eddy(settings, "dlq", "replay", stream, "--dry-run", "--json")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["dry_run"] is True
    assert eddy(settings, "dlq", "nope").returncode == 1

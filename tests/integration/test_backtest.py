"""``eddy backtest`` against the broker: history read from Kafka, river's own numbers, identical reruns, a report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics
from eddy.ml.models import build_estimator
from river import evaluate, metrics

from tests.conftest import service_env
from tests.helpers import create_topics, produce_values, sample_events, sample_labels
from tests.records import demo_contract

pytestmark = pytest.mark.integration


def backtest(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "eddy.cli.main", "backtest", settings.streams[0], "--no-record", *args]
    return subprocess.run(argv, env=service_env(settings), capture_output=True, timeout=120, cwd=REPO_ROOT)


def test_backtest_reads_history_matches_river_and_reruns_identically(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    events = sample_events(0, 3000)
    # Out of order on the topics: the backtest puts them in event-time order.
    produce_values(settings, topics.validated, events[1500:] + events[:1500])
    labels = sample_labels(0, 3000)
    produce_values(settings, topics.feedback, labels)
    out_a, out_b, report = tmp_path / "a.csv", tmp_path / "b.parquet", tmp_path / "report.html"
    first = backtest(settings, "--label-delay", "5", "--output", str(out_a), "--report", str(report))
    assert first.returncode == 0, first.stderr.decode()
    assert "3,000 events" in first.stdout.decode()

    # river's own prequential evaluation of the same sequence with the same delay (5 ms = 5 events here).
    spec = demo_contract().champion
    rows = [({f: e[f] for f in spec.features}, lab["label"]) for e, lab in zip(events, labels, strict=True)]
    expected = evaluate.progressive_val_score(rows, build_estimator(spec), metrics.Accuracy(), delay=5).get()
    table = pd.read_csv(out_a)
    assert len(table) == 3000
    assert table["metric"].iloc[-1] == pytest.approx(expected, abs=1e-9)

    again = backtest(settings, "--label-delay", "5", "--output", str(tmp_path / "a2.csv"))
    assert again.returncode == 0, again.stderr.decode()
    assert (tmp_path / "a2.csv").read_bytes() == out_a.read_bytes()
    for _ in range(2):
        parquet = backtest(settings, "--label-delay", "5", "--output", str(out_b))
        assert parquet.returncode == 0, parquet.stderr.decode()
        if _ == 0:
            first_bytes = out_b.read_bytes()
    assert out_b.read_bytes() == first_bytes
    assert "<svg" in report.read_text()

    # A time range keeps exactly the events whose event time falls in it.
    start, until = events[1000]["event_time_ms"], events[2000]["event_time_ms"]
    ranged = backtest(settings, "--from", str(start), "--until", str(until), "--output", str(tmp_path / "r.csv"))
    assert ranged.returncode == 0, ranged.stderr.decode()
    assert sorted(pd.read_csv(tmp_path / "r.csv")["event_id"]) == sorted(f"ev{i}" for i in range(1000, 2000))


def test_bad_arguments_are_one_line_errors(settings: Settings) -> None:
    create_topics(settings)
    for args, words in [
        (("--label-delay", "soon"), "--label-delay"),
        (("--model", "nope"), "not a model"),
        (("--from", "yesterday"), "ISO 8601"),
        (("--model", "default", "--model", "default"), "more than once"),
    ]:
        result = backtest(settings, *args)
        assert result.returncode == 2, result.stderr
        assert words in result.stderr.decode() and result.stderr.decode().count("\n") == 1

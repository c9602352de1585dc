"""Model CI on the broker: on the same history a worse spec fails ``eddy backtest --gate`` and a better one passes.

Each run writes its JUnit file and JSON summary; the exit code says which way the gates went (0 passed,
3 failed, 1 not judged). The CLI runs in this process (``main``), as a CI job would run it, only faster.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from eddy.cli.common import EXIT_FAILURE, EXIT_GATE_FAILED, EXIT_OK
from eddy.cli.main import main
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics

from tests.helpers import create_topics, produce_values, sample_events, sample_labels

pytestmark = pytest.mark.integration

EVENTS = 2000
GATE = "candidate.accuracy >= champion.accuracy - 0.005"


def gated(settings: Settings, tmp_path: Path, run: str, *args: str) -> tuple[int, dict, ET.Element]:
    """``eddy backtest`` with the gate, its JUnit file and its summary: exit code, summary, JUnit root."""
    junit, summary = tmp_path / f"{run}.xml", tmp_path / f"{run}.json"
    argv = ["backtest", settings.streams[0], "--no-record", "--label-delay", "5", "--gate", GATE]
    code = main(
        [
            *argv,
            "--gate-file",
            str(tmp_path / "gates.yaml"),
            "--junit",
            str(junit),
            "--summary-json",
            str(summary),
            *args,
        ]
    )
    return code, json.loads(summary.read_text()), ET.parse(junit).getroot()


def test_a_worse_spec_fails_the_gate_and_a_better_one_passes(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in settings.kafka_env().items():
        monkeypatch.setenv(key, value)
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    events = sample_events(0, EVENTS)
    produce_values(settings, topics.validated, events)
    produce_values(settings, topics.feedback, sample_labels(0, EVENTS))
    (tmp_path / "gates.yaml").write_text("gates:\n  - name: enough history\n    gate: candidate.labels >= 1000\n")
    # The label is x0 + x1 > 8: a model of x2 alone is close to a coin.
    weak = tmp_path / "weak.yaml"
    weak.write_text(
        "name: weak\nfeatures: [x2]\npipeline:\n  - preprocessing.StandardScaler: {}\n"
        "  - linear_model.LogisticRegression: {}\n"
    )

    # A pull request proposing the weak model: the champion (the contract's model) is better by far.
    code, summary, junit = gated(settings, tmp_path, "worse", "--candidate", str(weak))
    out = capsys.readouterr()
    assert code == EXIT_GATE_FAILED, out.err
    assert summary["status"] == "failed" and summary["exit_code"] == EXIT_GATE_FAILED
    assert summary["sides"]["candidate"]["model"] == "spec:weak"
    assert summary["sides"]["champion"]["model"] == "spec:default"
    assert summary["data"]["events"] == EVENTS
    accuracy = {side: summary["sides"][side]["metrics"]["accuracy"] for side in ("champion", "candidate")}
    assert accuracy["candidate"] < accuracy["champion"] - 0.2
    assert (junit.get("tests"), junit.get("failures"), junit.get("errors")) == ("2", "1", "0")
    failed = junit.find("testsuite/testcase[@name='candidate.accuracy >= champion.accuracy - 0.005']/failure")
    assert failed is not None and f"candidate.accuracy = {accuracy['candidate']:.6g} is not >=" in failed.get(
        "message", ""
    )
    assert "FAIL  candidate.accuracy" in out.out and "PASS  enough history: candidate.labels = 2000 >= 1000" in out.out

    # The main branch's contract had the weak model; this branch's contract (the stream's) has the better one.
    base = tmp_path / "base"
    base.mkdir()
    contract = settings.contracts_dir / f"{stream}.yaml"
    (base / "demo.avsc").write_bytes((settings.contracts_dir / "demo.avsc").read_bytes())
    (base / contract.name).write_text(contract.read_text().replace("features: [x0, x1, x2]", "features: [x2]"))
    champion = f"{base / contract.name}#default"
    code, summary, junit = gated(settings, tmp_path, "better", "--champion", champion, "--candidate", "default")
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    assert summary["status"] == "passed" and summary["passed"] is True
    assert summary["sides"]["champion"]["model"] == champion
    assert summary["sides"]["champion"]["spec"]["features"] == ["x2"]
    assert summary["sides"]["candidate"]["metrics"]["accuracy"] > summary["sides"]["champion"]["metrics"]["accuracy"]
    assert (junit.get("tests"), junit.get("failures"), junit.get("errors")) == ("2", "0", "0")

    # No history in the range: nothing to judge, which is neither a pass nor a worse model.
    after = str(events[-1]["event_time_ms"] + 1)
    code, summary, junit = gated(settings, tmp_path, "empty", "--candidate", str(weak), "--from", after)
    assert code == EXIT_FAILURE, capsys.readouterr().err
    assert summary["status"] == "error" and junit.get("errors") == "1"

"""faust apps on eddy's topics (``eddy.integrations.faust``), each a faust worker process against the test broker.

faust-streaming is an extra (``pip install 'eddy[faust]'``; CI installs it): without it these tests skip.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from eddy.core.settings import REPO_ROOT, Settings
from eddy.core.topics import StreamTopics

from tests.conftest import service_env
from tests.helpers import create_topics, produce_values, read_topic

pytest.importorskip("faust", reason="faust-streaming is not installed: pip install 'eddy[faust]' (CI installs it)")
pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "docs" / "examples" / "faust_predictions.py"
TIME_LIMIT_S = 90.0
PRINTED = re.compile(r"e\d+ \S+ \S+")

# A faust app that labels every served prediction with its own answer: eddy's topics both ways.
LABELER = """
import time
from eddy.core.settings import Settings
from eddy.integrations.faust import eddy_app, feedback_topic, predictions_topic

settings = Settings.from_env()
app = eddy_app(f"{settings.group_prefix}-faust-labeler", settings, web_enabled=False)
predictions = predictions_topic(app, settings.streams[0], settings)
feedback = feedback_topic(app, settings.streams[0], settings)


@app.agent(predictions)
async def label(records):
    async for event_id, p in records.items():
        if p["served"]:
            value = {"event_id": event_id, "label": p["prediction"], "label_time_ms": int(time.time() * 1000),
                     "source": "faust"}
            await feedback.send(key=event_id, value=value)


if __name__ == "__main__":
    app.main()
"""


def prediction(stream: str, i: int, served: bool = True) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "stream": stream,
        "model_name": "default" if served else "shadow",
        "model_version": 1,
        "model_learned": i,
        "served": served,
        "prediction": i % 2 == 0,
        "probabilities": {"true": 0.75, "false": 0.25},
        "features": {"x0": float(i), "region": "east"},
        "event_time_ms": 1_700_000_000_000 + i,
        "predicted_at_ms": 1_700_000_000_100 + i,
        "latency_ms": 0.5,
        "ingested_at_ms": None,
        "source_partition": 0,
        "source_offset": i,
        "segment": "east",
    }


def faust_worker(script: Path, settings: Settings, cwd: Path) -> subprocess.Popen[str]:
    """``python SCRIPT worker`` on the test broker and registry, its log in ``cwd/worker.log``."""
    env = service_env(settings, EDDY_STREAMS=settings.streams[0], PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, str(script), "worker", "--loglevel", "warn"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=open(cwd / "worker.log", "w"),
        text=True,
    )


def stop(worker: subprocess.Popen[str], cwd: Path) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
    print((cwd / "worker.log").read_text()[-3000:])


def lines_until(worker: subprocess.Popen[str], want: int, timeout_s: float) -> list[str]:
    """The worker's prediction lines (``EVENT_ID MODEL ANSWER``, not its banner), until ``want`` or ``timeout_s``."""
    assert worker.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(lines) < want and time.monotonic() < deadline and worker.poll() is None:
        ready, _, _ = select.select([worker.stdout], [], [], 0.5)
        if ready:
            line = worker.stdout.readline()
            if not line:  # the worker closed its output: it is stopping
                break
            if PRINTED.fullmatch(line.strip()):
                lines.append(line.strip())
    return lines


def test_the_example_app_prints_every_served_prediction(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    served = [prediction(stream, i) for i in range(30)]
    shadows = [prediction(stream, 100 + i, served=False) for i in range(10)]
    produce_values(settings, StreamTopics(stream).predictions, served + shadows)

    worker = faust_worker(EXAMPLE, settings, tmp_path)
    try:
        lines = lines_until(worker, len(served), TIME_LIMIT_S)
        # The shadow answers sit between the served ones in each partition: a short wait shows none is printed.
        lines += lines_until(worker, 1, 2.0)
    finally:
        stop(worker, tmp_path)
    expected = {f"{p['event_id']} default {p['prediction']}" for p in served}
    assert set(lines) == expected, f"printed {len(lines)} lines, expected {len(expected)}"


def test_a_faust_app_reads_and_writes_eddys_topics(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    served = [prediction(stream, i) for i in range(20)]
    produce_values(settings, topics.predictions, [*served, prediction(stream, 100, served=False)])

    script = tmp_path / "labeler.py"
    script.write_text(LABELER)
    worker = faust_worker(script, settings, tmp_path)
    try:
        labels = read_topic(settings, topics.feedback, expect=len(served), timeout_s=TIME_LIMIT_S)
    finally:
        stop(worker, tmp_path)
    # eddy's own serde decodes what faust wrote: the registry's schema id, the feedback schema.
    assert {(f["event_id"], f["label"], f["source"]) for f in labels} == {
        (p["event_id"], p["prediction"], "faust") for p in served
    }


def test_importing_the_integration_without_faust_names_the_extra(tmp_path: Path) -> None:
    # A faust package that cannot be imported stands in for a missing one.
    (tmp_path / "faust").mkdir()
    (tmp_path / "faust" / "__init__.py").write_text("raise ModuleNotFoundError('no faust here', name='faust')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", "import eddy.integrations.faust"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ModuleNotFoundError: eddy.integrations.faust needs faust-streaming (faust is missing): "
        "pip install 'eddy[faust]'"
    )

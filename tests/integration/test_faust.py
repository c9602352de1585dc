"""faust apps on eddy's topics (``eddy.integrations.faust``), each a faust worker process against the test broker.

faust-streaming is an extra (``pip install 'eddy[faust]'``; CI installs it): without it these tests skip.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

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
    """``python SCRIPT worker`` on the test broker and registry, its log in ``cwd/worker.log``.

    ``--without-web``: faust's ``worker`` command turns its web server on whatever the app's ``web_enabled``
    says, and two workers at once (another test run) would then both bind port 6066.
    """
    env = service_env(settings, EDDY_STREAMS=settings.streams[0], PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [sys.executable, str(script), "worker", "--without-web", "--loglevel", "info"],
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
    # What the worker logged before the test stopped it (joined group, assignment, ready), shown on failure.
    log = (cwd / "worker.log").read_text()
    print(log.split("Signal received")[0][-4000:])


class PrintedLines:
    """The worker's prediction lines (``EVENT_ID MODEL ANSWER``, not its banner), read by a thread as it prints.

    A thread, not ``select`` on the pipe: a burst of prints reaches the pipe at once, the first ``readline``
    moves all of it into the file object's buffer, and ``select`` then sees an empty pipe, so the lines in
    that buffer were never read (CI: 15 of 30 printed lines seen).
    """

    def __init__(self, worker: subprocess.Popen[str]) -> None:
        assert worker.stdout is not None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(worker.stdout,), daemon=True)
        self._reader.start()
        self._closed = False

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            if PRINTED.fullmatch(line.strip()):
                self._lines.put(line.strip())
        self._lines.put(None)  # the worker closed its output: it stopped

    def until(self, want: int, timeout_s: float) -> list[str]:
        """The next lines, until ``want`` of them, ``timeout_s`` or the worker's end."""
        lines: list[str] = []
        deadline = time.monotonic() + timeout_s
        while len(lines) < want and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._closed = True
            else:
                lines.append(line)
        return lines


def test_the_example_app_prints_every_served_prediction(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    create_topics(settings)
    served = [prediction(stream, i) for i in range(30)]
    shadows = [prediction(stream, 100 + i, served=False) for i in range(10)]
    produce_values(settings, StreamTopics(stream).predictions, served + shadows)

    worker = faust_worker(EXAMPLE, settings, tmp_path)
    printed = PrintedLines(worker)
    try:
        lines = printed.until(len(served), TIME_LIMIT_S)
        # The shadow answers sit between the served ones in each partition: a short wait shows none is printed.
        lines += printed.until(1, 2.0)
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

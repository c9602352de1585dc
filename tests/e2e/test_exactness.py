"""Learning is exact: the model eddy learns, through two SIGKILLs of the learner, is the model river learns.

20,000 events go through the inference service; their labels are then fed to
S.feedback in a shuffled but known order while the learning service runs. The
learner is killed with SIGKILL twice mid-feed, each time after a checkpoint and
after output that checkpoint does not cover, and restarted on the same state
directory. The last snapshot on S.models must have learned exactly 20,000
labels, each once (S.labeled holds one example per event); on one partition it
must be the very model a plain river pipeline, built from the same contract
spec, learns from the same features in the same label order: the same weights
and the same probabilities on held-out rows, bit for bit.

Labels are fed only after the learner has read every prediction and checkpointed
that, so each label joins as soon as it is read: the learning order is then the
order of S.feedback, with no dependence on how the two input topics interleave.
"""

from __future__ import annotations

import dataclasses
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.ml.labels import coerce_label
from eddy.ml.models import build_estimator, load_snapshot_estimator
from eddy.services.learning import checkpoint

from tests.helpers import (
    ValueWriter,
    create_topics,
    log_records,
    produce_values,
    read_topic,
    service,
    wait_until,
)

pytestmark = pytest.mark.e2e

TOTAL = 20_000
HELD_OUT = 500
SEED = 20_240_612
CHUNK = 250
# Paced so that the learner is still learning when it is killed.
CHUNK_PAUSE_S = 0.1
# Long enough that no other checkpoint comes between the one waited for and the kill (about a second later).
CHECKPOINT_INTERVAL_S = 5


@dataclass(frozen=True)
class Phase:
    """One learner process, while labels [begin, end) are fed.

    With ``kill_at``: labels up to ``checkpointed`` are fed and the test waits until they are learned and
    checkpointed; the rest are then fed, and the learner is SIGKILLed as soon as it has published ``kill_at``
    learned. The kill so lands mid-feed, with output past the checkpoint the next learner restores.
    """

    begin: int
    end: int
    checkpointed: int = 0
    kill_at: int | None = None


PHASES = (Phase(0, 8_000, 4_000, 5_000), Phase(8_000, 15_000, 11_000, 12_000), Phase(15_000, TOTAL))


def feature_rows(rng: random.Random, count: int) -> list[dict[str, float]]:
    return [{f"x{j}": round(rng.uniform(0.0, 10.0), 6) for j in range(3)} for _ in range(count)]


def make_events(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """TOTAL events, and their labels in the (shuffled) order they are to be fed."""
    now = int(time.time() * 1000)
    events, labels = [], []
    for i, row in enumerate(feature_rows(rng, TOTAL)):
        event_id = f"x{i}"
        events.append({"event_id": event_id, "event_time_ms": now + i, "region": "south", **row})
        truth = row["x0"] - row["x1"] + 0.5 * row["x2"] + rng.gauss(0.0, 1.5) > 2.5
        labels.append({"event_id": event_id, "label": truth, "label_time_ms": now + TOTAL, "source": "test"})
    rng.shuffle(labels)
    return events, labels


def learned(url: str, stream: str) -> int:
    """The learned count the learner last published (its /healthz), -1 before the first publish."""
    try:
        doc = httpx.get(f"{url}/healthz", timeout=2).json()
    except httpx.HTTPError:
        return -1
    return int(doc.get("learned", {}).get(stream, -1))


def checkpointed(settings: Settings, stream: str, model: str) -> tuple[int, int]:
    """(predictions read, labels learned) according to the checkpoint of ``model``'s learner on disk."""
    saved = checkpoint.load(checkpoint.checkpoint_path(settings.state_dir, stream, model), settings.keyring())
    if saved is None:
        return 0, 0
    topic = StreamTopics(stream).predictions
    read = sum(o for tp, o in saved.state.offsets.items() if tp.rpartition(":")[0] == topic)
    return read, saved.state.model.learned_count


def feed(writer: ValueWriter, labels: list[dict[str, Any]], until: Callable[[], bool] | None = None) -> int:
    """Feed ``labels`` in paced chunks, stopping after the first chunk after which ``until()`` holds.

    Returns how many labels were fed.
    """
    for start in range(0, len(labels), CHUNK):
        writer.send(labels[start : start + CHUNK])
        if until is not None and until():
            return min(len(labels), start + CHUNK)
        time.sleep(CHUNK_PAUSE_S)
    return len(labels)


def model_state(model: Any) -> dict[str, Any]:
    """Everything a StandardScaler | LogisticRegression pipeline has learned."""
    scaler, logreg = model["StandardScaler"], model["LogisticRegression"]
    return {
        "counts": dict(scaler.counts),
        "means": dict(scaler.means),
        "vars": dict(scaler.vars),
        "weights": dict(logreg.weights),
        "intercept": logreg.intercept,
        "iterations": logreg.optimizer.n_iterations,
    }


@pytest.mark.parametrize("partitions", [1, 4])
def test_learner_killed_twice_learns_every_label_once(settings: Settings, tmp_path: Path, partitions: int) -> None:
    settings = dataclasses.replace(settings, partitions=partitions)
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    contract = load_contracts(settings.contracts_dir, settings.streams)[stream]
    champion = contract.champion.name
    create_topics(settings)
    rng = random.Random(SEED)
    events, labels = make_events(rng)
    held_out = feature_rows(rng, HELD_OUT)
    env = {"EDDY_CHECKPOINT_INTERVAL_S": str(CHECKPOINT_INTERVAL_S), "EDDY_SNAPSHOT_INTERVAL_S": "0.5"}
    feedback = ValueWriter(settings, topics.feedback)
    logs: list[Path] = []
    kills: list[tuple[int, int]] = []  # per kill: (learned in the checkpoint on disk, learned published)
    predictions: list[dict[str, Any]] = []
    (tmp_path / "inference").mkdir()
    started = time.monotonic()
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{time.monotonic() - started:.1f}s {what}")

    with service("inference", settings, tmp_path / "inference"):
        for n, phase in enumerate(PHASES):
            workdir = tmp_path / f"learning{n}"
            workdir.mkdir()
            with service("learning", settings, workdir, **env) as (proc, url, log):
                logs.append(log)
                mark(f"learner {n} up")
                if n == 0:
                    produce_values(settings, topics.validated, events)
                    predictions = read_topic(
                        settings, topics.predictions, expect=TOTAL * len(contract.models), timeout_s=90
                    )
                    mark("predicted")
                    wait_until(
                        lambda: checkpointed(settings, stream, champion)[0] == TOTAL,
                        60,
                        what="a checkpoint of the learner holding every prediction",
                    )
                    mark("predictions checkpointed")
                else:
                    # Restored from the checkpoint, it catches up on what was fed and learns no label twice.
                    wait_until(lambda b=phase.begin: learned(url, stream) >= b, 60, what=f"learner at {phase.begin}")
                    assert learned(url, stream) == phase.begin, "a label was learned twice after a restart"
                    mark("caught up")
                if phase.kill_at is None:
                    feed(feedback, labels[phase.begin : phase.end])
                    wait_until(lambda: learned(url, stream) >= TOTAL, 60, what=f"{TOTAL} labels learned")
                    continue
                feed(feedback, labels[phase.begin : phase.checkpointed])
                wait_until(
                    lambda c=phase.checkpointed: checkpointed(settings, stream, champion)[1] == c,
                    4 * CHECKPOINT_INTERVAL_S,
                    what=f"a checkpoint with {phase.checkpointed} learned",
                )
                mark("labels checkpointed")
                at_kill = -1

                def reached(k: int = phase.kill_at) -> bool:
                    nonlocal at_kill
                    at_kill = learned(url, stream)
                    return at_kill >= k

                rest = labels[phase.checkpointed : phase.end]
                fed = feed(feedback, rest, until=reached)
                wait_until(reached, 30, 0.05, f"{phase.kill_at} labels learned")
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills.append((checkpointed(settings, stream, champion)[1], at_kill))
                mark("killed")
                # The rest of the phase arrives while no learner runs.
                feed(feedback, rest[fed:])
    mark("all learned")
    elapsed = time.monotonic() - started

    # Each prediction once (inference ran throughout), each label learned once, one labeled example per event.
    predictions = [p for p in predictions if p["model_name"] == champion]
    assert all(p["served"] for p in predictions)
    assert Counter(p["event_id"] for p in predictions) == Counter(e["event_id"] for e in events)
    snapshots = [s for s in read_topic(settings, topics.models, timeout_s=30, quiet_s=1) if s["model_name"] == champion]
    final = snapshots[-1]
    assert final["learned_count"] == TOTAL
    assert max(s["learned_count"] for s in snapshots) == TOTAL, "a label was learned twice"
    labeled = [x for x in read_topic(settings, topics.labeled, timeout_s=60, quiet_s=2) if x["model_name"] == champion]
    duplicates = {e: c for e, c in Counter(x["event_id"] for x in labeled).items() if c > 1}
    assert not duplicates, f"{len(duplicates)} labeled examples written twice, e.g. {sorted(duplicates)[:5]}"
    assert {x["event_id"] for x in labeled} == {e["event_id"] for e in events}

    # Each restarted learner restored the checkpoint its predecessor left, whose model had learned part of
    # the labels, and found the labeled examples its predecessor wrote past it.
    killed = [phase for phase in PHASES if phase.kill_at is not None]
    for log, (saved, published), phase in zip(logs[1:], kills, killed, strict=True):
        records = log_records(log)
        restored = [doc["learned"] for doc in records if doc.get("msg") == "restored checkpoint"]
        assert restored == [saved], f"{log}: restored {restored}, the checkpoint on disk had {saved}"
        assert phase.checkpointed <= saved < published, (saved, published)
        assert any(doc.get("msg") == "labeled examples already written after the checkpoint" for doc in records)
    print(f"partitions={partitions} (checkpointed, published) at the kills={kills} run={elapsed:.0f}s")
    print("timeline:", "; ".join(timeline))

    eddy_model = load_snapshot_estimator(final, settings.keyring())
    assert model_state(eddy_model)["counts"] == dict.fromkeys(contract.champion.features, TOTAL)
    if partitions > 1:
        # Across partitions the learning order is the order the learner fetched them in: only counts compare.
        return

    # The same pipeline, learning the same features (as logged in each prediction) in the same label order.
    features = {p["event_id"]: p["features"] for p in predictions}
    reference = build_estimator(contract.champion)
    for label in labels:
        reference.learn_one(features[label["event_id"]], coerce_label(label["label"], contract.task))
    assert model_state(eddy_model) == model_state(reference)
    mismatched = [x for x in held_out if eddy_model.predict_proba_one(x) != reference.predict_proba_one(x)]
    assert not mismatched, f"{len(mismatched)} of {HELD_OUT} held-out rows predicted differently"

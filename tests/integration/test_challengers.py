"""Champion and challenger through the real inference and learning services.

The stream's contract gets a second model: a tree on two of the three features.
Every event is predicted by both; only the champion's prediction is served. Both
learn from the same labels, each on the features it logged, and both are hot-swapped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics

from tests.helpers import create_topics, produce_values, read_topic, service, wait_until

pytestmark = pytest.mark.integration

CHALLENGER = """
  - name: tree
    features: [x0, x1]
    pipeline:
      - tree.HoeffdingAdaptiveTreeClassifier: {grace_period: 50, seed: 1}
"""
EVENTS = 400


def event(i: int) -> dict[str, object]:
    x0 = float(i % 10)
    return {"event_id": f"c{i}", "event_time_ms": 1_700_000_000_000 + i, "x0": x0, "x1": 1.0, "x2": 2.0}


def label(i: int) -> dict[str, object]:
    return {"event_id": f"c{i}", "label": i % 10 > 4, "label_time_ms": 1_700_000_000_500 + i, "source": "test"}


def test_challengers_predict_in_shadow_learn_from_the_same_labels_and_are_hot_swapped(
    settings: Settings, tmp_path: Path
) -> None:
    (stream,) = settings.streams
    contract = settings.contracts_dir / f"{stream}.yaml"
    contract.write_text(contract.read_text() + CHALLENGER)
    topics = StreamTopics(stream)
    create_topics(settings)
    with service("learning", settings, tmp_path), service("inference", settings, tmp_path):
        produce_values(settings, topics.validated, [event(i) for i in range(EVENTS)])
        predictions = read_topic(settings, topics.predictions, expect=2 * EVENTS, timeout_s=60)
        served = Counter((p["model_name"], p["served"]) for p in predictions)
        assert served == {("default", True): EVENTS, ("tree", False): EVENTS}
        shadow = next(p for p in predictions if p["model_name"] == "tree")
        assert set(shadow["features"]) == {"x0", "x1"}

        produce_values(settings, topics.feedback, [label(i) for i in range(EVENTS)])
        labeled = read_topic(settings, topics.labeled, expect=2 * EVENTS, timeout_s=60)
        assert Counter(x["model_name"] for x in labeled) == {"default": EVENTS, "tree": EVENTS}

        def both_swapped() -> bool:
            produce_values(settings, topics.validated, [event(EVENTS + 1)])
            later = read_topic(settings, topics.predictions, timeout_s=5, quiet_s=1)
            learned = {p["model_name"]: p["model_learned"] for p in later if p["event_id"] == f"c{EVENTS + 1}"}
            return learned.get("default") == EVENTS and learned.get("tree") == EVENTS

        wait_until(both_swapped, 60, interval_s=1, what="inference to serve both models after all labels")

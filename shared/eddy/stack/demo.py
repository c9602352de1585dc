"""The demo feed: three measurements whose meaning changes partway, as events now and labels later.

Labels are what the world would tell us afterwards: each goes to S.feedback
``label_delay_s`` after its event. Event ids are deterministic per run so a
test can check exactly which events made it through.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from river.datasets import synth

from eddy.avro.serde import SerdeRegistry
from eddy.contracts.records import INGESTED_AT_HEADER, now_ms
from eddy.core.topics import StreamTopics
from eddy.kafka.producer import ConfirmedProducer

log = logging.getLogger(__name__)
REGIONS = ("north", "south", "east", "west")


@dataclass(frozen=True)
class DemoConfig:
    stream: str = "demo"
    rate: float = 100.0
    count: int = 0  # 0: run until stopped
    label_delay_s: float = 2.0
    drift_at: int = 6000
    drift_width: int = 500
    seed: int = 42
    run_id: str = "run"


def demo_examples(config: DemoConfig) -> Iterator[tuple[dict[str, Any], bool]]:
    """(features, label) pairs: river's SEA measurements, with a change of which ones matter at ``drift_at``.

    Before the drift the label is SEA's first concept, ``x0 + x1 <= 8``, and x2 is noise; after it the
    label is ``x1 + x2 <= 10``. An online linear model takes a couple of thousand labels to unlearn x0,
    while a model trained afresh on a few hundred labels after the change is right at once: the case
    retraining and promotion exist for. The switch is blended over ``drift_width`` events with river's
    sigmoid, as in ``synth.ConceptDriftStream``.

    >>> import itertools
    >>> examples = demo_examples(DemoConfig(drift_at=100, drift_width=1))
    >>> first = [label == (x["x0"] + x["x1"] <= 8) for x, label in itertools.islice(examples, 90)]
    >>> later = [label == (x["x1"] + x["x2"] <= 10) for x, label in itertools.islice(examples, 20, 100)]
    >>> all(first), all(later)
    (True, True)
    """
    measurements = synth.SEA(variant=0, seed=config.seed)
    draws = random.Random(config.seed)
    width = max(config.drift_width, 1)
    for position, (x, _) in enumerate(measurements):
        z = max(min(-4.0 * (position - config.drift_at) / width, 50.0), -50.0)
        drifted = draws.random() < 1.0 / (1.0 + math.exp(z))
        label = x[1] + x[2] <= 10 if drifted else x[0] + x[1] <= 8
        features = {"x0": float(x[0]), "x1": float(x[1]), "x2": float(x[2])}
        yield {**features, "region": draws.choice(REGIONS)}, bool(label)


def run_demo_feed(config: DemoConfig, serdes: SerdeRegistry, producer: ConfirmedProducer, stop: threading.Event) -> int:
    """Produce events at ``config.rate`` and their labels after the delay; returns the number of events."""
    topics = StreamTopics(config.stream)
    events, feedback = serdes.for_topic(topics.events), serdes.for_topic(topics.feedback)
    due: list[tuple[float, str, bool]] = []
    started = time.monotonic()
    sent = 0
    examples = demo_examples(config)
    while not stop.is_set() and (config.count == 0 or sent < config.count or due):
        now = time.monotonic()
        target = int((now - started) * config.rate)
        while sent < target and (config.count == 0 or sent < config.count):
            features, label = next(examples)
            event_id = f"{config.run_id}-{sent}"
            at = now_ms()
            event = {"event_id": event_id, "event_time_ms": at, **features}
            header = [(INGESTED_AT_HEADER, str(at).encode())]
            producer.produce(topics.events, events.encode(event), event_id.encode(), header, at)
            heapq.heappush(due, (now + config.label_delay_s, event_id, label))
            sent += 1
        while due and due[0][0] <= now:
            _, event_id, label = heapq.heappop(due)
            value = {"event_id": event_id, "label": label, "label_time_ms": now_ms(), "source": "demo"}
            producer.produce(topics.feedback, feedback.encode(value), event_id.encode())
        producer.poll(0)
        if sent and sent % 1000 == 0 and target == sent:
            log.info("demo progress", extra={"events": sent, "labels_pending": len(due)})
        stop.wait(0.01)
    producer.confirm()
    return sent

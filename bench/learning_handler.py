"""The learning handler alone, in process (no Kafka): labels per second under CPython's default garbage-collector
settings and under eddy's (``eddy.runtime.gc_policy``), alternating in one run, beside river's own loop.

The pairs are decoded already and fed in batches of ``batch`` predictions then ``batch`` labels, in event order,
as ``eddy.services.learning.handlers.Learner`` gets them from the stream loop. Used by
``python -m bench.bench_learning --handler-alone``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eddy.contracts.stream import ModelSpec, load_contracts
from eddy.core.topics import StreamTopics
from eddy.ml.models import ModelState
from eddy.runtime.loop import InRecord
from eddy.services.learning.handlers import Learner, LearnerState

from bench.learning_drain import STREAM, Pair, collector, contracts_with, river_rate_and_cpu


@dataclass
class HandlerRound:
    policy: str  # "default" or "eddy"
    handler_per_s: float
    river_per_s: float


def batches(pairs: list[Pair], batch: int) -> list[list[InRecord]]:
    topics = StreamTopics(STREAM)
    out = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        records = [
            InRecord(topics.predictions, 0, start + i, p["event_id"], dict(p), 0, [], b"")
            for i, (p, _) in enumerate(chunk)
        ]
        records += [
            InRecord(topics.feedback, 0, start + i, y["event_id"], dict(y), 0, [], b"")
            for i, (_, y) in enumerate(chunk)
        ]
        out.append(records)
    return out


def handler_rate(spec: ModelSpec, pairs: list[Pair], batch: int) -> float:
    contract = load_contracts(contracts_with(spec, Path(tempfile.mkdtemp()) / "contracts"), (STREAM,))[STREAM]
    learner = Learner(contract, LearnerState(ModelState.fresh(STREAM, contract.model(spec.name))))
    work: list[Any] = batches(pairs, batch)
    started = time.perf_counter()
    for records in work:
        learner(records)
    return len(pairs) / (time.perf_counter() - started)


def rounds(spec: ModelSpec, pairs: list[Pair], batch: int = 2_500, repeat: int = 2) -> list[HandlerRound]:
    """``repeat`` rounds of each policy, alternating, each with the handler then river's loop."""
    out = []
    for _ in range(repeat):
        for policy in ("default", "eddy"):
            with collector(policy == "eddy"):
                handler = handler_rate(spec, pairs, batch)
            river, _, _ = river_rate_and_cpu(spec, pairs, gc_tuned=policy == "eddy")
            out.append(HandlerRound(policy, handler, river))
    return out

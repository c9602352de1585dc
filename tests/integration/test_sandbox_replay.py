"""Backtesting through the live pipeline: a sandbox stream's services predict events replayed into it.

The parent is the demo contract under a fresh name (so tests sharing the broker
never meet), the sandbox a contract that only says ``sandbox_of`` the parent.
Validation and inference run for the sandbox alone; the parent's events are
replayed, byte for byte, to the sandbox's events topic, and come out as the
sandbox's predictions.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from eddy.contracts.stream import load_contracts
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics
from eddy.history.replay import Bound, replay

from tests.helpers import create_topics, produce_values, read_topic, sample_events, service, wait_until

pytestmark = pytest.mark.integration

EVENTS = 60
"""Events replayed; 20 more come before the replayed range."""


def test_replayed_events_are_predicted_on_the_sandbox_stream(settings: Settings, tmp_path: Path) -> None:
    (parent,) = settings.streams
    sandbox = f"{parent}-replay-1"
    (settings.contracts_dir / f"{sandbox}.yaml").write_text(f"stream: {sandbox}\nsandbox_of: {parent}\n")
    assert load_contracts(settings.contracts_dir)[sandbox].sandbox_of == parent
    both = replace(settings, streams=(parent, sandbox))
    sandboxed = replace(settings, streams=(sandbox,))
    create_topics(both)

    # Events on the parent, written before and after a moment: only those after it are replayed.
    early, late = sample_events(0, 20), sample_events(20, EVENTS)
    produce_values(settings, StreamTopics(parent).events, early)
    time.sleep(0.05)
    cut = int(time.time() * 1000)
    time.sleep(0.05)
    produce_values(settings, StreamTopics(parent).events, late)
    wanted = {e["event_id"] for e in late}

    with service("validation", sandboxed, tmp_path), service("inference", sandboxed, tmp_path):
        result = replay(settings, StreamTopics(parent).events, StreamTopics(sandbox).events, Bound("time", cut))
        assert result.total == EVENTS and result.failed == 0 and result.same_partitions

        def predicted() -> set[str]:
            found = read_topic(sandboxed, StreamTopics(sandbox).predictions, timeout_s=10, quiet_s=0.5)
            return {p["event_id"] for p in found if p["served"]}

        wait_until(lambda: predicted() >= wanted, 60, interval_s=1, what="predictions of every replayed event")
        assert predicted() == wanted

    validated = read_topic(sandboxed, StreamTopics(sandbox).validated, timeout_s=10, quiet_s=0.5)
    assert sorted(v["event_id"] for v in validated) == sorted(wanted)
    assert read_topic(settings, StreamTopics(parent).predictions, timeout_s=5, quiet_s=0.5) == []

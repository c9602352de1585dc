"""Regression (found by the chaos runs): a service paused longer than its session timeout carries on.

A SIGSTOP (or a VM stall, or a long GC pause) longer than ``session.timeout.ms`` gets the member
evicted from its consumer group. On SIGCONT the client learns its partitions are *lost*, not handed
over: committing their offsets then fails with UNKNOWN_MEMBER_ID. The loop used to attempt that commit
in its revoke callback, and the exception ended the service (exit 1, restarted by the supervisor).
Now it rejoins and carries on: what it handled after its last commit is read again (at-least-once).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from eddy.core.settings import Settings
from eddy.core.topics import StreamTopics

from tests.helpers import create_topics, produce_values, read_topic, sample_events, service

pytestmark = pytest.mark.integration


def test_validation_paused_past_its_session_timeout_rejoins_without_exiting(settings: Settings, tmp_path: Path) -> None:
    (stream,) = settings.streams
    topics = StreamTopics(stream)
    create_topics(settings)
    with service("validation", settings, tmp_path) as (proc, _url, log):
        produce_values(settings, topics.events, sample_events(0, 200))
        read_topic(settings, topics.validated, expect=200, timeout_s=60)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(settings.session_timeout_ms / 1000 * 1.5)
        proc.send_signal(signal.SIGCONT)
        produce_values(settings, topics.events, sample_events(200, 200))
        validated = read_topic(settings, topics.validated, expect=400, timeout_s=60)
        assert proc.poll() is None, f"validation exited with {proc.returncode} after the pause"
        assert "lost" in log.read_text()
    assert {v["event_id"] for v in validated} == {f"ev{i}" for i in range(400)}

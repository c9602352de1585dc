"""A start-up read the cluster's ACLs refuse: the service waits, alive and not ready, saying why."""

from __future__ import annotations

import threading
from unittest.mock import MagicMock

import pytest
from eddy.core.settings import Settings
from eddy.kafka.client import NotAuthorized
from eddy.runtime import service
from eddy.runtime.loop import UNAUTHORIZED
from eddy.runtime.observability import Health
from eddy.runtime.service import ServiceContext


def context(stop: threading.Event) -> ServiceContext:
    return ServiceContext("validation", Settings(), {}, MagicMock(), MagicMock(), Health("validation"), stop, 0)


def test_a_refused_read_is_tried_again_and_readiness_says_why_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "AUTHORIZATION_RETRY_S", 0.01)
    ctx = context(threading.Event())
    seen: list[str] = []

    def read() -> str:
        seen.append(ctx.health.status)
        if len(seen) < 3:
            raise NotAuthorized("demo.profiles:0: not authorized: Broker: Topic authorization failed")
        return "profiles"

    assert ctx.until_authorized(read, "read the reference profiles") == "profiles"
    assert seen == ["starting", UNAUTHORIZED, UNAUTHORIZED]
    # Back to where it was: being granted the read does not make it ready.
    assert ctx.health.status == "starting" and ctx.health.snapshot()["authorization_error"] is None


def test_stopped_while_refused_it_raises_the_refusal() -> None:
    stop = threading.Event()
    stop.set()
    ctx = context(stop)

    def read() -> str:
        raise NotAuthorized("not authorized: Broker: Group authorization failed")

    with pytest.raises(NotAuthorized, match="Group authorization failed"):
        ctx.until_authorized(read, "read the model-event history")
    assert ctx.health.snapshot()["authorization_error"] == "not authorized: Broker: Group authorization failed"


def test_other_errors_are_not_swallowed() -> None:
    ctx = context(threading.Event())

    def read() -> str:
        raise TimeoutError("reading demo.profiles to the end took more than 120 s")

    with pytest.raises(TimeoutError):
        ctx.until_authorized(read, "read the reference profiles")
    assert ctx.health.status == "starting"
